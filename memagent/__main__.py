"""`python -m memagent` runs the CLI."""

from memagent.cli import main

if __name__ == "__main__":
    main()
