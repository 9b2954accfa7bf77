"""Who uses an embedded cluster: one file per open handle, so the last one out stops the server.

A client killed with kill -9 never unregisters; its file names its pid and the process's start time, so
whoever looks next sees that the process is gone (or that the pid now belongs to another process) and
forgets it.
"""

from __future__ import annotations

import os
from pathlib import Path


class ClientRegistry:
    """The client files of one cluster (callers hold the cluster's file lock)."""

    def __init__(self, folder: Path, handle: object) -> None:
        self.folder = folder
        self._handle = id(handle)

    @property
    def _file(self) -> Path:
        # One entry per open handle, not per process: a process may open the database twice (an API user
        # with two Memory objects), and closing one must not stop the server under the other. The pid is
        # read each time: a forked child must never remove its parent's entry.
        return self.folder / f"{os.getpid()}.{self._handle:x}"

    def register(self) -> None:
        """Record this handle as a client."""
        import psutil

        created = psutil.Process(os.getpid()).create_time()
        self._file.write_text(repr(created))

    def unregister(self) -> None:
        """Forget this handle."""
        self._file.unlink(missing_ok=True)

    def live(self) -> list[int]:
        """The pids of live clients; entries of dead ones are removed."""
        import psutil

        live = []
        for entry in self.folder.iterdir():
            try:
                pid, created = int(entry.name.split(".")[0]), float(entry.read_text())
                alive = abs(psutil.Process(pid).create_time() - created) < 1.0
            except (ValueError, OSError, psutil.Error):
                alive = False
            if alive:
                live.append(pid)
            else:  # a client that died without releasing (kill -9): forget it
                entry.unlink(missing_ok=True)
        return live
