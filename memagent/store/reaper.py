"""The embedded server's reaper: `python -m memagent.store.reaper HOME TOKEN SECONDS`.

Started detached by the last client to leave a lingering server (EmbeddedPostgres.linger): it sleeps, then
stops the server unless a client came meanwhile or a later release scheduled its own stop.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    """Sleep, then stop the server if it is still idle."""
    home, token, seconds = Path(argv[0]), argv[1], float(argv[2])
    time.sleep(seconds)
    from memagent.store.embedded import EmbeddedPostgres

    EmbeddedPostgres(home).stop_if_idle(token)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
