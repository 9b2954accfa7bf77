"""The embedded server's stop, when its shutdown takes longer than pg_ctl waits.

A shutdown is made slow by freezing one backend (SIGSTOP): the server's fast shutdown waits for every
backend to end, and a frozen one ends only once thawed (SIGCONT), as a long shutdown checkpoint holds a stop.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import psycopg2
import pytest

from memagent.errors import EmbeddedServerError
from memagent.store import embedded_commands
from memagent.store.embedded import EmbeddedPostgres
from memagent.store.embedded_commands import pid_status
from tests.conftest import process_env
from tests.test_embedded import server_running


def connect(url: str) -> psycopg2.extensions.connection:
    return psycopg2.connect(url.replace("+psycopg2", "", 1))  # (libpq reads the URI: socket folder, port)


def thawed(pid: int) -> None:
    with suppress(ProcessLookupError):  # (gone already)
        os.kill(pid, signal.SIGCONT)


@contextmanager
def a_backend_frozen_for(url: str, seconds: float) -> Iterator[None]:
    """One backend of the server stopped (SIGSTOP) and thawed `seconds` later, whatever happens meanwhile."""
    conn = connect(url)
    with conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        row = cur.fetchone()
    assert row is not None
    backend = int(row[0])
    os.kill(backend, signal.SIGSTOP)
    thaw = threading.Timer(seconds, thawed, (backend,))
    thaw.start()
    try:
        yield
    finally:
        thaw.cancel()
        thawed(backend)
        thaw.join()
        conn.close()


def test_a_stop_is_over_only_when_the_server_is_gone(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pg_ctl gives up waiting (here after 1 s; by default 60): the stop goes on waiting until the server
    is gone, so that the next start does not find it still shutting down."""
    monkeypatch.setattr(embedded_commands, "PG_CTL_WAIT", 1)
    server = EmbeddedPostgres(home)
    url = server.acquire()
    with a_backend_frozen_for(url, 3.0):
        start = time.monotonic()
        server.stop()
        waited = time.monotonic() - start
        assert not server_running(home), f"stop returned after {waited:.1f} s with the server still up"
    assert waited >= 2.5


def test_a_start_during_a_shutdown_waits_for_it_then_starts_anew(home: Path) -> None:
    """A shutdown begun outside this handle (a Ctrl-C on `memagent stop`, or pg_ctl by hand) and still
    going: acquire waits until it is over and starts the server again, rather than hand out a server
    whose connections are refused ("the database system is shutting down")."""
    first = EmbeddedPostgres(home)
    url = first.acquire()
    with a_backend_frozen_for(url, 2.0):
        pidfile = first.paths.data / "postmaster.pid"
        os.kill(int(pidfile.read_text().split()[0]), signal.SIGINT)  # a fast shutdown, by hand
        assert embedded_commands.wait_until(lambda: pid_status(first.paths.data) == "stopping", 10)
        second = EmbeddedPostgres(home)
        again = second.acquire()
    conn = connect(again)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            assert cur.fetchone() == (1,)
    finally:
        conn.close()
        second.release()
        first.release()
    assert not server_running(home)


def test_a_server_that_never_finishes_its_shutdown_is_one_line_with_the_log(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(embedded_commands, "PG_CTL_WAIT", 1)
    monkeypatch.setattr(embedded_commands, "STOP_LIMIT", 1)
    server = EmbeddedPostgres(home)
    url = server.acquire()
    with a_backend_frozen_for(url, 30.0):
        with pytest.raises(
            EmbeddedServerError, match=r"still shutting down after 1 s; see its log: .*\.log"
        ) as err:
            server.stop()
        assert "\n" not in str(err.value)
    assert embedded_commands.wait_until(lambda: not server_running(home), 30)


INTERRUPTED_START = """
import sys
from pathlib import Path
from memagent.store.embedded import EmbeddedPostgres

def interrupted(self, socket_dir):
    raise KeyboardInterrupt  # a Ctrl-C between the server's start and its first connection

EmbeddedPostgres._ensure_database = interrupted
try:
    EmbeddedPostgres(Path(sys.argv[1])).acquire()
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""


def test_a_start_interrupted_leaves_no_server_without_a_client(home: Path) -> None:
    """A Ctrl-C (or a failure) after the server started and before this process became its client: the
    server is stopped again, not left running with no client and no reaper to stop it."""
    first = EmbeddedPostgres(home)  # the cluster made (initdb) and stopped: the child only starts it
    first.acquire()
    first.release()
    child = subprocess.run(
        [sys.executable, "-c", INTERRUPTED_START, str(home)],
        env=process_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.stdout.strip() == "interrupted", child.stderr
    assert not server_running(home)


def test_the_end_of_a_command_does_not_fail_on_a_slow_shutdown(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last client's release stops the server (no linger): its work is done and stored, so a
    shutdown that outlasts pg_ctl's wait is left to finish (the next start waits for it), neither waited
    for at the end of the command nor turned into an error after the fact."""
    monkeypatch.setattr(embedded_commands, "PG_CTL_WAIT", 1)
    monkeypatch.setattr(embedded_commands, "STOP_LIMIT", 60)
    server = EmbeddedPostgres(home)
    url = server.acquire()
    with a_backend_frozen_for(url, 5.0):
        start = time.monotonic()
        server.release()  # no error
        assert time.monotonic() - start < 4
        assert pid_status(server.paths.data) == "stopping"
    assert embedded_commands.wait_until(lambda: not server_running(home), 30)


def test_a_start_that_outlasts_pg_ctls_wait_is_left_to_finish(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server still starting when pg_ctl gives up (a crash recovery can take minutes) is not stopped by
    the failed start: stopped, its recovery would start over from the same point next time, and again."""
    first = EmbeddedPostgres(home)  # the cluster made (initdb) and stopped
    first.acquire()
    first.release()
    monkeypatch.setattr(embedded_commands, "PG_CTL_WAIT", 1)
    pidfile = first.paths.data / "postmaster.pid"
    frozen: list[int] = []

    def frozen_before_ready() -> bool:
        try:
            pid = int(pidfile.read_text().split()[0])
            os.kill(pid, signal.SIGSTOP)
        except (OSError, IndexError, ValueError):  # not written yet (or that postmaster gave up at once)
            return False
        frozen.append(pid)
        return True

    def freeze_the_postmaster() -> None:
        assert embedded_commands.wait_until(frozen_before_ready, 30)

    watcher = threading.Thread(target=freeze_the_postmaster)
    watcher.start()
    try:
        with pytest.raises(EmbeddedServerError, match="did not start"):
            EmbeddedPostgres(home).acquire()
    finally:
        watcher.join()
        for pid in frozen:
            thawed(pid)
    assert embedded_commands.wait_until(lambda: pid_status(first.paths.data) == "ready", 30)
    again = EmbeddedPostgres(home)
    again.acquire()  # the server that finished starting, used as it is
    again.release()
    assert not server_running(home)


def test_a_stale_pid_file_naming_another_postgres_is_not_this_server(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a crash and a reboot the pid in the file may belong to another process called postgres (a
    system PostgreSQL): it is not this cluster's server (it works in another folder), so the file is
    removed and the server started — not waited on, as a shutdown, or taken as running."""
    monkeypatch.setattr(embedded_commands, "STOP_LIMIT", 20)
    server = EmbeddedPostgres(home)  # the cluster made (initdb) and stopped
    server.acquire()
    server.release()
    impostor_bin = tmp_path / "postgres"
    shutil.copy("/bin/sleep", impostor_bin)
    impostor = subprocess.Popen([str(impostor_bin), "60"], cwd=tmp_path)
    try:
        lines = [str(impostor.pid), str(server.paths.data), "0", "5432", "", "", "0 0", "stopping"]
        (server.paths.data / "postmaster.pid").write_text("\n".join(lines) + "\n")
        start = time.monotonic()
        url = server.acquire()
        assert time.monotonic() - start < 10
        conn = connect(url)
        conn.close()
        server.release()
        assert impostor.poll() is None  # never signalled
    finally:
        impostor.kill()
        impostor.wait()
    assert not server_running(home)


def test_a_server_whose_pid_cannot_be_seen_still_counts_while_its_socket_answers(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From another PID namespace (a container or sandbox sharing the home), or with no /proc, the pid in
    the file is not to be seen: the server counts as running while its socket takes connections — its pid
    file removed, PostgreSQL would shut itself down a minute later — and as gone once it does not."""
    import psutil

    server = EmbeddedPostgres(home)
    server.acquire()
    pidfile = server.paths.data / "postmaster.pid"
    written = pidfile.read_text()

    def unseen(pid: int) -> psutil.Process:
        raise psutil.NoSuchProcess(pid)

    with monkeypatch.context() as patched:
        patched.setattr(psutil, "Process", unseen)
        assert embedded_commands.server_alive(server.paths.data)
        assert pidfile.read_text() == written
    server.release()
    assert not server_running(home)
    pidfile.write_text(written)  # the same file, its server gone: the socket refuses
    with monkeypatch.context() as patched:
        patched.setattr(psutil, "Process", unseen)
        assert not embedded_commands.server_alive(server.paths.data)
    assert not pidfile.exists()
