"""memagent's command-line interface."""

from __future__ import annotations


def main() -> None:
    """Run the `memagent` command."""
    from memagent.cli.app import main as run

    run()
