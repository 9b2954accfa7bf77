"""`python -m memagent` runs the CLI."""

from memagent.cli import main

main()
