"""The embedded cluster's own commands (initdb, pg_ctl): run as the cluster's owner, and pg_ctl over as soon
as what it waits for is seen."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from memagent.errors import EmbeddedServerError
from memagent.store import pgbinaries
from memagent.store.embedded_paths import is_root

if TYPE_CHECKING:
    import psutil

# pg_ctl's own wait for a start or a stop (its default). A start that outlasts it (a crash recovery) is left
# to finish. A shutdown may take longer too: its checkpoint writes out whatever the buffer cache (up to
# 8 GB) holds unwritten, which after a large import on a slow disk is minutes. The stop is then waited for
# here, up to STOP_LIMIT: reported stopped early, the next start would find the server still shutting down
# and its connections refused.
PG_CTL_WAIT = 60
STOP_LIMIT = 900


@contextmanager
def cluster_lock(path: Path) -> Iterator[None]:
    """The cluster's lock, held while its server is started, stopped or handed a client. A stop holds it
    until the server is gone, so it is waited for as long as a stop may take (and a start after it)."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(path), timeout=STOP_LIMIT + 300)
    try:
        lock.acquire()
    except Timeout:
        minutes = round(lock.timeout / 60)
        raise EmbeddedServerError(
            f"another process has held the embedded server's lock {path} for over {minutes} minutes (a "
            "server that does not finish shutting down, or a process stuck): see the server's log beside it"
        ) from None
    try:
        yield
    finally:
        lock.release()


def stop_server(pg_ctl_path: Path, data: Path, log: Path, *, strict: bool) -> None:
    """Stop the server of `data` (a fast shutdown), over when it is gone. A shutdown longer than pg_ctl's
    wait is waited for up to STOP_LIMIT. strict: raise when it is not gone then, or pg_ctl could not tell
    it to stop. Not strict (the end of a command, whose work is done, and the reaper): over when pg_ctl
    is; a shutdown still under way is finished by the server, and waited for by the next start."""
    base = data.parent
    pidfile = data / "postmaster.pid"
    stop = [str(pg_ctl_path), "-D", str(data), "-m", "fast", "-w", "-t", str(PG_CTL_WAIT), "stop"]
    if pg_ctl(stop, base, lambda: not pidfile.exists()) or not strict or not server_alive(data):
        return  # (not strict: a shutdown still under way is waited for by the next start)
    if pid_status(data) == "stopping":  # told to stop, still shutting down (its checkpoint)
        if wait_until(lambda: not server_alive(data), STOP_LIMIT) or not strict:
            return
        raise EmbeddedServerError(
            f"the embedded PostgreSQL server is still shutting down after {STOP_LIMIT} s; see its log: {log}"
        )
    if strict:
        raise EmbeddedServerError(f"the embedded PostgreSQL server did not stop; see its log: {log}")


def as_server(base: Path) -> dict[str, object]:
    """How the server's commands run: in the cluster's folder `base` with a minimal environment and, when
    memagent runs as root, as the service user."""
    kwargs: dict[str, object] = {
        "cwd": base,
        "env": {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC"},
    }
    if is_root():
        uid, gid = pgbinaries.service_ids()
        kwargs |= {"user": uid, "group": gid, "extra_groups": []}
    return kwargs


def run(args: list[str], base: Path, *, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """A server command to its end, its output captured."""
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        args, capture_output=True, text=True, timeout=timeout, check=False, **as_server(base)
    )


def pg_ctl(args: list[str], base: Path, done: Callable[[], bool], timeout: float = 90) -> bool:
    """pg_ctl with -w, over as soon as `done()` says what pg_ctl waits for has happened; whether it has
    (False if pg_ctl fails or has not ended within `timeout`). pg_ctl looks every 100 ms, which made a
    start of ~105 ms take 0.22 s and every stop a multiple of 0.1 s; this process looks every 2 ms, where
    pg_ctl looks (the server's pid file: postmaster_ready), then ends pg_ctl."""
    proc = subprocess.Popen(  # type: ignore[call-overload]
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        **as_server(base),
    )
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None:
            if done():
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.002)
        return bool(proc.returncode == 0)
    finally:
        # pg_ctl ended now, not at its next look, also when this process is interrupted: left running, it
        # would pass a Ctrl-C meant for this process group on to the new server as a shutdown, and a stop
        # overtaken by the next start would wait on that server for a minute. The server runs in a session
        # of its own by then (a start), or has already been told to stop (a stop).
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def postmaster_ready(data: Path, since: float) -> bool:
    """Whether the server of the data directory `data`, started at or after `since` (epoch seconds, with
    pg_ctl's 2 s of leeway), accepts connections: its postmaster.pid read as `pg_ctl start -w` reads it (the
    third line the start time, the eighth the status)."""
    try:
        lines = (data / "postmaster.pid").read_text().splitlines()
        return len(lines) >= 8 and int(lines[2]) >= int(since) - 2 and lines[7].strip() == "ready"
    except (OSError, ValueError):  # not there yet, or being written
        return False


def server_alive(data: Path) -> bool:
    """Whether the server of the data directory `data` runs. A dead server's pid file is removed (its pid
    may now be another process's, even another PostgreSQL's, which would make PostgreSQL refuse to start
    and a stop wait on it): hold the cluster lock. A pid that is not to be seen, or not the server, still
    counts while the file's socket takes connections (a server in another PID namespace)."""
    import psutil

    pidfile = data / "postmaster.pid"
    try:
        lines = pidfile.read_text().splitlines()
        proc = psutil.Process(int(lines[0]))
        alive = bool(
            proc.is_running()
            and proc.status() != psutil.STATUS_ZOMBIE
            and proc.name() == "postgres"
            and _serves(proc, data)
        )
    except (OSError, IndexError, ValueError):
        return False  # no pid file (or one being written): not running
    except psutil.NoSuchProcess:
        alive = False
    except psutil.Error:  # cannot tell: assume it runs rather than risk two servers on one cluster
        return True
    if not alive and not _listening(lines):
        pidfile.unlink(missing_ok=True)
        return False
    return True


def _listening(lines: list[str]) -> bool:
    """Whether a server takes connections on the socket a pid file names (its fourth line the port, its fifth
    the socket's folder): the server of that file, running where its pid cannot be seen — in another PID
    namespace (a container or sandbox sharing the home), or with no /proc."""
    import socket

    if len(lines) < 5 or not lines[3].strip().isdigit() or not lines[4].strip():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(f"{lines[4].strip()}/.s.PGSQL.{lines[3].strip()}")
        except OSError:  # refused (no server), no socket file, or the path too long
            return False
    return True


def _serves(proc: psutil.Process, data: Path) -> bool:
    """Whether the process `proc`, called postgres, is the server of `data`: run by the directory's owner (as
    PostgreSQL requires) and, where that can be seen, working in it — the same folder by device and inode,
    so through symlinks and bind mounts alike."""
    here = data.stat()
    if proc.uids().effective != here.st_uid:
        return False
    try:
        cwd = os.stat(f"/proc/{proc.pid}/cwd")
    except OSError:  # not to be seen (no /proc here, or not allowed): the owner decides
        return True
    return (cwd.st_dev, cwd.st_ino) == (here.st_dev, here.st_ino)


def pid_status(data: Path) -> str | None:
    """The status the server of the data directory `data` writes in its pid file ("starting", "ready",
    "stopping", ...); None without one."""
    try:
        lines = (data / "postmaster.pid").read_text().splitlines()
    except OSError:
        return None
    return lines[7].strip() if len(lines) >= 8 else None


def wait_until(done: Callable[[], bool], limit: float) -> bool:
    """Whether `done()` became true within `limit` seconds (looked at every 10 ms)."""
    deadline = time.monotonic() + limit
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True
