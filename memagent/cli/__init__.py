"""memagent's command-line interface."""

from __future__ import annotations

import sys


def main() -> None:
    """Run the `memagent` command: in the warm command server when there is one, else here."""
    from memagent.cli.client import run_via_server

    # `memagent mcp` is a long-lived server: a warm start saves it nothing, so it runs in this process.
    serving = "mcp" in [arg for arg in sys.argv[1:] if not arg.startswith("-")][:1]
    code = None if serving else run_via_server(sys.argv[1:])
    if code is not None:
        sys.exit(code)
    from memagent.cli.app import main as run

    run()
