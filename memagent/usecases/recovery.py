"""The recovery file: memories that could not be stored because the database was unreachable.

When a memory must be stored and PostgreSQL cannot be reached, the memory is appended (and fsynced) to
`recovery.jsonl` in the memagent home, readable by its owner only. The next run that opens the database
stores them and empties the file. Replaying is idempotent: identical content in a namespace is stored once,
so a replay interrupted halfway is simply replayed again.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from memagent.config import Settings
from memagent.errors import DatabaseUnavailableError, KeptError, MemagentError
from memagent.records import RememberResult
from memagent.store.database import Database
from memagent.usecases.service import MemoryService
from memagent.validation import clean_date, clean_metadata, clean_name, clean_text
from memagent.wording import memories


@dataclass(frozen=True)
class Kept:
    """One memory waiting in the recovery file."""

    namespace: str
    session_id: str
    content: str
    metadata: dict[str, Any]
    created_at: datetime
    # The database it was meant for (memagent.store.database.Database.describe: no secret in it); a replay
    # stores it there only. None: kept by a memagent that did not record it (any database takes it).
    target: str | None = None

    def to_json(self) -> str:
        """The memory as one line of the file."""
        record = {
            "namespace": self.namespace,
            "session_id": self.session_id,
            "content": self.content,
            "metadata": self.metadata,
            "created_at": self.created_at.isoformat(),
            "target": self.target,
        }
        return json.dumps(record, ensure_ascii=False) + "\n"


class RecoveryFile:
    """Append-only JSON lines under a file lock, replayed into the database by the next successful run."""

    def __init__(self, home: Path) -> None:
        self.path = home / "recovery.jsonl"
        self._lock = home / "recovery.lock"

    def keep(self, item: Kept) -> Path:
        """Append one memory durably; returns the file's path."""
        from filelock import FileLock

        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with FileLock(str(self._lock), timeout=30):
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, item.to_json().encode("utf-8"))
                os.fsync(fd)
            finally:
                os.close(fd)
        return self.path

    def waiting(self) -> list[Kept]:
        """The memories in the file (lines that cannot be read are skipped)."""
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                data = json.loads(line)
                out.append(
                    Kept(
                        namespace=str(data["namespace"]),
                        session_id=str(data["session_id"]),
                        content=str(data["content"]),
                        metadata=dict(data.get("metadata") or {}),
                        created_at=datetime.fromisoformat(str(data["created_at"])),
                        target=None if data.get("target") is None else str(data["target"]),
                    )
                )
            except (ValueError, KeyError, TypeError):
                continue  # a line torn by a crash mid-write: nothing to store
        return out

    def replay(self, memory: MemoryService, target: str, *, wait: float = 30) -> Replay:
        """Store the kept memories meant for `target` (the database `memory` is open on), with their original
        dates; the others, and those that cannot be stored, stay in the file.

        A replay never fails the command that runs it: the database going away again stops it (the rest
        waits), and a memory the database refuses (its embedding model changed, say) stays, with the reason.
        A memory kept for another database is never stored here: namespaces may be shared across databases.
        wait: how long to wait for another process's replay (0: skip if one runs).
        """
        try:  # (one look: another replay, in this process or another, may remove the file meanwhile)
            if self.path.stat().st_size == 0:
                return Replay()
        except FileNotFoundError:
            return Replay()
        from filelock import FileLock, Timeout

        try:
            with FileLock(str(self._lock), timeout=wait):
                everything = self.waiting()
                elsewhere = [item for item in everything if item.target not in (None, target)]
                kept = [item for item in everything if item.target in (None, target)]
                left: list[Kept] = []
                problem: str | None = None
                for index, item in enumerate(kept):
                    try:
                        memory.remember(
                            item.content,
                            namespace=item.namespace,
                            session_id=item.session_id,
                            metadata=item.metadata,
                            created_at=item.created_at,
                        )
                    except DatabaseUnavailableError as exc:
                        left, problem = kept[index:], exc.message
                        break
                    except MemagentError as exc:
                        left.append(item)
                        problem = exc.message
                self._rewrite(left + elsewhere)
        except Timeout:
            return Replay()
        return Replay(len(kept) - len(left), len(left), problem, len(elsewhere))

    def _rewrite(self, items: list[Kept]) -> None:
        if not items:
            self.path.unlink(missing_ok=True)
            return
        scratch = self.path.with_suffix(".tmp")
        fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, "".join(item.to_json() for item in items).encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(scratch, self.path)


# What still waits in a recovery file, as said by this process: (file, line).
_TOLD: set[tuple[Path, str]] = set()
_TOLD_LOCK = threading.Lock()


@dataclass(frozen=True)
class Replay:
    """What a replay of the recovery file did."""

    stored: int = 0
    waiting: int = 0  # meant for this database, still in the file
    problem: str | None = None  # why those could not be stored
    elsewhere: int = 0  # meant for another database: left in the file for it

    def messages(self) -> list[str]:
        """Lines for the user (none when there was nothing to replay)."""
        stored = [
            f"Stored {memories(self.stored)} kept in the recovery file while the database was unreachable."
        ]
        return (stored if self.stored else []) + self._standing()

    def news(self, path: Path) -> list[str]:
        """messages(), but what still waits in the file `path` only the first time this process says it: a
        long-lived process (a chat, the MCP server, an agent's Memory) replays on every remember."""
        lines = self.messages()
        with _TOLD_LOCK:
            for line in self._standing():
                if (path, line) in _TOLD:
                    lines.remove(line)
                _TOLD.add((path, line))
        return lines

    def _standing(self) -> list[str]:
        lines = []
        if self.waiting:
            lines.append(
                f"{memories(self.waiting)} in the recovery file could not be stored yet "
                f"({(self.problem or 'unknown reason').rstrip('.')}); memagent tries again on its next run."
            )
        if self.elsewhere:
            one = self.elsewhere == 1
            lines.append(
                f"{memories(self.elsewhere)} in the recovery file {'waits' if one else 'wait'} for another "
                f"database; memagent stores {'it' if one else 'them'} when it next reaches that one."
            )
        return lines


def remember_or_keep(
    service: Callable[[], MemoryService],
    settings: Settings,
    text: str,
    *,
    namespace: str | None = None,
    session_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    created_at: datetime | None = None,
    notify: Callable[[str], None] | None = None,
) -> RememberResult:
    """Remember a text; when the database cannot be reached (opening it included), keep it in the recovery
    file and raise KeptError saying where. Bad input is refused first, and never kept. Once the database
    answers again, memories kept earlier are stored too (notify says so)."""
    target = Database(settings).describe()
    item = Kept(
        namespace=clean_name(namespace if namespace is not None else settings.namespace, "namespace"),
        session_id=clean_name(session_id if session_id is not None else settings.session_id, "session"),
        content=clean_text(text),
        metadata=clean_metadata(metadata),
        created_at=datetime.now(UTC) if created_at is None else clean_date(created_at, "created_at"),
        target=target,
    )
    recovery = RecoveryFile(settings.home_path())
    try:
        opened = service()
        result = opened.remember(
            item.content,
            namespace=item.namespace,
            session_id=item.session_id,
            metadata=item.metadata,
            created_at=created_at,
        )
    except DatabaseUnavailableError as exc:
        raise KeptError(exc.message, kept=recovery.keep(item)) from None
    for line in recovery.replay(opened, target, wait=0).news(recovery.path):  # back: store what waits
        if notify is not None:
            notify(line)
    return result
