"""The embedded server's reaper: `python -m memagent.store.reaper HOME`.

Started detached by the last client to leave a lingering server (EmbeddedPostgres.linger), one per
cluster: it sleeps until the deadline in the linger record (later releases move it), then stops the server
unless a client is back. `memagent stop` ends it at once.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    """Sleep until the server may stop, then stop it if it is still idle."""
    from memagent.store.embedded import EmbeddedPostgres

    server = EmbeddedPostgres(Path(argv[0]))
    while (wait := server.reap()) is not None:
        time.sleep(min(wait, 60.0) + 0.05)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
