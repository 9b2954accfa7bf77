"""The embedded server's linger record: which reaper stops it, and when (callers hold the lock)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path


class Lingering:
    """A small JSON file beside the cluster: {"reaper": pid, "deadline": unix time}."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _read(self) -> dict[str, float]:
        try:
            data = json.loads(self.path.read_text())
            return {"reaper": int(data["reaper"]), "deadline": float(data["deadline"])}
        except (OSError, ValueError, KeyError, TypeError):
            return {}

    @property
    def reaper(self) -> int | None:
        """The pid of the reaper in charge, if one was started."""
        pid = self._read().get("reaper")
        return None if pid is None else int(pid)

    def left(self) -> float:
        """Seconds until the server may stop (0 when the time is up)."""
        return max(0.0, self._read().get("deadline", 0.0) - time.time())

    def reaper_alive(self) -> bool:
        """Whether the reaper in charge still runs (a killed one is replaced)."""
        import psutil

        pid = self.reaper
        if pid is None:
            return False
        try:
            return "memagent.store.reaper" in psutil.Process(pid).cmdline()
        except psutil.Error:
            return False

    def begin(self, reaper: int, seconds: float) -> None:
        """Put a new reaper in charge, stopping the server `seconds` from now."""
        self._write(reaper, time.time() + seconds)

    def extend(self, seconds: float) -> None:
        """Move the deadline to `seconds` from now (the reaper in charge stays)."""
        pid = self.reaper
        if pid is not None:
            self._write(pid, time.time() + seconds)

    def end(self, *, kill: bool = True) -> None:
        """Forget the record; kill: also end the reaper in charge (`memagent stop`)."""
        if kill and self.reaper_alive():
            pid = self.reaper
            assert pid is not None
            os.kill(pid, signal.SIGTERM)
        self.path.unlink(missing_ok=True)

    def _write(self, reaper: int, deadline: float) -> None:
        self.path.write_text(json.dumps({"reaper": reaper, "deadline": deadline}))
