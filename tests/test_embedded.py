"""The zero-setup path in real processes: a fresh memagent home, the embedded server, and real-life faults."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from memagent.store.embedded import EmbeddedPostgres
from tests.conftest import needs_local_model, process_env
from tests.fake_openai import FakeOpenAI

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def cli_env(home: Path, fake: FakeOpenAI | None = None) -> dict[str, str]:
    env = process_env()
    env["MEMAGENT_HOME"] = str(home)
    if fake is not None:
        env |= {
            "MEMAGENT_OPENAI_BASE_URL": fake.base_url,
            "OPENAI_API_KEY": fake.api_key,
            "MEMAGENT_EMBEDDING_MODEL": "fake-embed-384",
            "MEMAGENT_EMBEDDING_DIM": "384",
        }
    return env


def memagent(env: dict[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "memagent", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def server_running(home: Path) -> bool:
    pidfile = EmbeddedPostgres(home).paths.data / "postmaster.pid"
    if not pidfile.exists():
        return False
    return bool(psutil.pid_exists(int(pidfile.read_text().split()[0])))


@needs_local_model
def test_remember_then_recall_in_two_processes_with_the_local_model(home: Path) -> None:
    """The README story: nothing configured, two processes, the memory lives in Postgres."""
    env = cli_env(home)
    first = memagent(
        env, "remember", "My name is Priya and I'm building a Rust compiler for embedded targets"
    )
    assert first.returncode == 0, first.stderr
    memagent(env, "remember", "I had pancakes for breakfast on Sunday")
    assert not server_running(home), "the last client stops the embedded server"

    second = memagent(env, "recall", "what project am I working on?", "--json")
    assert second.returncode == 0, second.stderr
    found = json.loads(second.stdout)
    assert found[0]["content"].startswith("My name is Priya")
    assert found[0]["embedding_model"] == "all-MiniLM-L6-v2"
    assert found[0]["similarity"] > found[1]["similarity"]

    table = memagent(env, "recall", "what project am I working on?")
    assert "Rust compiler" in table.stdout and "similarity" in table.stdout
    assert table.stderr == ""  # no progress bars or warnings leak onto stderr


def test_the_server_lingers_after_its_last_client_and_stop_or_the_reaper_ends_it(
    home: Path, fake: FakeOpenAI
) -> None:
    """A run of commands pays one server start, not one per command; `memagent stop` stops it at once, and
    with nobody coming back the reaper stops it after MEMAGENT_LINGER seconds."""
    env = cli_env(home, fake) | {"MEMAGENT_LINGER": "30"}
    assert memagent(env, "remember", "the server stays up a while").returncode == 0
    assert server_running(home), "still up for the next command"
    listed = memagent(env, "inspect", "--json")
    assert listed.returncode == 0 and "the server stays up a while" in listed.stdout
    stopped = memagent(env, "stop")
    assert stopped.returncode == 0 and "Stopped the embedded server" in stopped.stderr
    assert not server_running(home)
    assert "not running" in memagent(env, "stop").stderr

    short = env | {"MEMAGENT_LINGER": "1"}
    assert memagent(short, "inspect").returncode == 0
    assert server_running(home)
    deadline = time.monotonic() + 30
    while server_running(home) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not server_running(home), "the reaper stopped it"


@pytest.mark.skipif(not IS_ROOT, reason="root-only behaviour")
def test_as_root_no_home_permissions_change_and_the_socket_is_private(home: Path, fake: FakeOpenAI) -> None:
    home.mkdir(mode=0o700)
    watched = [home, home.parent, Path.home()]
    before = {p: stat.S_IMODE(p.stat().st_mode) for p in watched}

    server = EmbeddedPostgres(home)
    server.acquire()
    try:
        assert {p: stat.S_IMODE(p.stat().st_mode) for p in watched} == before
        sock = server.paths.data / ".s.PGSQL.5432"
        assert stat.S_IMODE(sock.stat().st_mode) == 0o700
        assert stat.S_IMODE(server.paths.base.stat().st_mode) == 0o700
        assert stat.S_IMODE(server.paths.data.stat().st_mode) == 0o700
        # Another local user cannot reach the socket.
        # (The system Python: a virtualenv under /root is out of another user's reach by design.)
        system_python = shutil.which("python3", path="/usr/bin:/bin")
        assert system_python is not None
        probe = subprocess.run(
            [
                system_python,
                "-c",
                "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])",
                str(sock),
            ],
            user="nobody",
            capture_output=True,
            text=True,
            cwd="/",
        )
        assert probe.returncode != 0 and "Permission denied" in probe.stderr
        # And nothing listens on TCP.
        postmaster = psutil.Process(int((server.paths.data / "postmaster.pid").read_text().split()[0]))
        assert all(
            c.type != socket.SOCK_STREAM or c.status != "LISTEN" or c.family == socket.AF_UNIX
            for c in postmaster.net_connections(kind="all")
        )
    finally:
        server.release()


def test_a_client_killed_with_kill_9_does_not_keep_the_server_forever(home: Path, fake: FakeOpenAI) -> None:
    env = cli_env(home, fake)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys,time; from pathlib import Path; from memagent.store.embedded import EmbeddedPostgres;"
            "EmbeddedPostgres(Path(sys.argv[1])).acquire(); print('ready', flush=True); time.sleep(600)",
            str(home),
        ],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert server_running(home)

    result = memagent(env, "remember", "after the crash")
    assert result.returncode == 0, result.stderr
    assert not server_running(home), "the dead client was pruned and the last live one stopped the server"


def test_a_dead_postmaster_is_restarted(home: Path, fake: FakeOpenAI) -> None:
    env = cli_env(home, fake)
    assert memagent(env, "remember", "before the crash").returncode == 0
    server = EmbeddedPostgres(home)
    server.acquire()
    pid = int((server.paths.data / "postmaster.pid").read_text().split()[0])
    os.kill(pid, signal.SIGKILL)
    psutil.Process(pid).wait(timeout=10) if psutil.pid_exists(pid) else None
    try:
        result = memagent(env, "recall", "crash", "--json")
        assert result.returncode == 0, result.stderr
        assert [m["content"] for m in json.loads(result.stdout)] == ["before the crash"]
    finally:
        server.release()


def test_two_processes_at_once_on_a_fresh_home(home: Path, fake: FakeOpenAI) -> None:
    env = cli_env(home, fake)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "memagent", "remember", f"parallel memory {i}"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outcomes = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outcomes
    listed = memagent(env, "inspect", "--json")
    assert sorted(m["content"] for m in json.loads(listed.stdout)) == [
        "parallel memory 0",
        "parallel memory 1",
    ]


def test_a_server_that_cannot_start_gives_one_line_with_the_log_path(home: Path, fake: FakeOpenAI) -> None:
    env = cli_env(home, fake)
    assert memagent(env, "inspect").returncode == 0
    server = EmbeddedPostgres(home)
    with open(server.paths.data / "postgresql.conf", "a") as conf:
        conf.write("\nshared_buffers = 'plenty'\n")
    result = memagent(env, "inspect")
    assert result.returncode == 3
    assert result.stderr.strip().count("\n") == 0
    assert str(server.paths.log) in result.stderr


def test_a_start_is_over_when_the_pid_file_says_ready(tmp_path: Path, home: Path) -> None:
    """memagent reads the server's postmaster.pid as pg_ctl start -w does, more often: a server of this
    start (its start time, with pg_ctl's 2 s of leeway) whose status line says ready; not one still
    starting, an older server's file, a file half written, or none."""
    from memagent.store.embedded_commands import postmaster_ready

    now = time.time()

    def pid_file(started: float, status: str, lines: int = 8) -> Path:
        data = tmp_path / f"data-{started}-{status.strip()}-{lines}"
        data.mkdir()
        fields = ["4242", str(data), str(int(started)), "5432", "/tmp/s", "", "  1  2", status][:lines]
        (data / "postmaster.pid").write_text("\n".join(fields) + "\n")
        return data

    assert not postmaster_ready(tmp_path / "none", now)
    assert not postmaster_ready(pid_file(now, "starting"), now)
    assert not postmaster_ready(pid_file(now - 60, "ready   "), now)
    assert not postmaster_ready(pid_file(now, "ready   ", lines=7), now)
    assert postmaster_ready(pid_file(now - 1, "ready   "), now)

    server = EmbeddedPostgres(home)
    since = time.time()
    server.acquire()
    try:
        assert postmaster_ready(server.paths.data, since)
    finally:
        server.release()


CTRL_C_AFTER_START = """
import signal, sys, time
from pathlib import Path
from memagent.store.embedded import EmbeddedPostgres

signal.signal(signal.SIGINT, lambda *_: None)  # an agent's own Ctrl-C: cancel a turn, not quit
server = EmbeddedPostgres(Path(sys.argv[1]))
server.acquire()
print("acquired", flush=True)
time.sleep(3)
server.release()
"""


def test_a_ctrl_c_right_after_a_start_leaves_the_server_running(home: Path) -> None:
    """A Ctrl-C reaches the terminal's whole process group: nothing memagent started for the server may
    still be in it to pass the signal on as a shutdown (a pg_ctl left to end on its own did, for up to
    100 ms after the start)."""
    first = EmbeddedPostgres(home)  # the cluster made (initdb) and stopped: the child only starts it
    first.acquire()
    first.release()
    assert not server_running(home)
    proc = subprocess.Popen(
        [sys.executable, "-c", CTRL_C_AFTER_START, str(home)],
        env=process_env(),
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "acquired"
        os.killpg(proc.pid, signal.SIGINT)
        time.sleep(0.5)
        assert server_running(home), "the Ctrl-C stopped the server its process still uses"
        assert not [p for p in psutil.Process(proc.pid).children() if p.name() == "pg_ctl"]
    finally:
        proc.wait(timeout=30)
    assert not server_running(home)  # stopped by its last client, as ever


@pytest.mark.skipif(not IS_ROOT, reason="needs root to switch to another user")
def test_as_an_ordinary_user_the_cluster_lives_in_their_home(fake: FakeOpenAI) -> None:
    """The laptop case: no root, no service user, everything under the user's own home."""
    system_python = shutil.which("python3", path="/usr/bin:/bin")
    if system_python is None:
        pytest.skip("no system python3")
    nobody = pwd.getpwnam("nobody")
    root = Path(__file__).resolve().parent.parent
    pythonpath = f"{root}:{sysconfig.get_paths()['purelib']}"
    user_home = Path(tempfile.mkdtemp(prefix="memagent-nobody-", dir="/tmp"))
    os.chown(user_home, nobody.pw_uid, nobody.pw_gid)
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(user_home),
        "PYTHONPATH": pythonpath,
        "MEMAGENT_OPENAI_BASE_URL": fake.base_url,
        "OPENAI_API_KEY": fake.api_key,
        "MEMAGENT_EMBEDDING_MODEL": "fake-embed-384",
        "MEMAGENT_EMBEDDING_DIM": "384",
        "MEMAGENT_LINGER": "0",
    }

    def as_nobody(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [system_python, *args],
            env=env,
            user="nobody",
            cwd=user_home,
            capture_output=True,
            text=True,
            timeout=180,
        )

    try:
        probe = as_nobody("-c", "import memagent.usecases.service, sqlalchemy, psycopg2")
        if probe.returncode != 0:
            pytest.skip(f"this virtualenv is not usable by another user: {probe.stderr.strip()[-200:]}")
        stored = as_nobody("-m", "memagent", "remember", "remembered by nobody")
        assert stored.returncode == 0, stored.stderr
        listed = as_nobody("-m", "memagent", "inspect", "--json")
        assert [m["content"] for m in json.loads(listed.stdout)] == ["remembered by nobody"]
        base = user_home / ".local" / "share" / "memagent" / "postgres"
        assert base.stat().st_uid == nobody.pw_uid
        assert stat.S_IMODE(base.stat().st_mode) == 0o700
        assert not (base / "data" / "postmaster.pid").exists(), "stopped when the last client exited"
    finally:
        shutil.rmtree(user_home, ignore_errors=True)


def test_the_buffer_cache_is_the_setting_when_the_server_starts(home: Path) -> None:
    """MEMAGENT_SHARED_BUFFERS_MB sizes the buffer cache of a server this process starts; unset, a quarter
    of the memory memagent may use, between 128 MB and 8 GB."""
    from memagent.config import Settings
    from memagent.store.database import Database
    from memagent.store.embedded_paths import shared_buffers_mb

    def shown(settings: Settings) -> str:
        with Database(settings) as db, db.engine.connect() as conn:
            return str(conn.exec_driver_sql("SHOW shared_buffers").scalar_one())

    assert shown(Settings(home=home, linger=0, shared_buffers_mb=48)) == "48MB"
    default = shared_buffers_mb()
    assert 128 <= default <= 8192
    assert shown(Settings(home=home, linger=0)) in {f"{default}MB", f"{default // 1024}GB"}

    # More than the machine holds: refused in one line naming the setting, before any server starts.
    env = cli_env(home) | {
        "MEMAGENT_SHARED_BUFFERS_MB": str(1_048_576),
        "MEMAGENT_EMBEDDING_PROVIDER": "local",
    }
    result = memagent(env, "inspect")
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "MEMAGENT_SHARED_BUFFERS_MB=1048576 is more than the" in result.stderr
    assert not server_running(home)


def test_a_containers_memory_limit_sizes_the_buffer_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a container or a systemd unit the machine's memory overstates what memagent may use: the lowest
    limit of its control group and the groups above it, when lower, is what the cache is a quarter of;
    "max" (cgroup v2) or v1's huge number mean no limit."""
    from memagent.store import embedded_paths

    root, self_cgroup = tmp_path / "cgroup", tmp_path / "self-cgroup"
    monkeypatch.setattr(embedded_paths, "CGROUP_ROOT", root)
    monkeypatch.setattr(embedded_paths, "SELF_CGROUP", self_cgroup)
    machine = embedded_paths.memory_mb()  # nothing to read: the machine's memory
    assert machine == psutil.virtual_memory().total // 2**20

    def limit(path: str, value: str) -> None:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(value + "\n")

    # cgroup v2: the process in /app/worker, the limit set on /app (a unit's MemoryMax), none on its own.
    self_cgroup.write_text("0::/app/worker\n")
    limit("app/worker/memory.max", "max")
    assert embedded_paths.memory_mb() == machine
    limit("app/memory.max", str(2 * 2**30))
    assert embedded_paths.memory_mb() == 2048 and embedded_paths.shared_buffers_mb() == 512
    # cgroup v1: the memory controller's own hierarchy, v1's "no limit" number, a limit two levels up.
    self_cgroup.write_text("4:memory:/jobs/42/step\n9:name=systemd:/\n")
    limit("memory/jobs/42/step/memory.limit_in_bytes", "9223372036854771712")
    assert embedded_paths.memory_mb() == machine
    limit("memory/jobs/memory.limit_in_bytes", str(300 * 2**20))
    assert embedded_paths.memory_mb() == 300 and embedded_paths.shared_buffers_mb() == 128  # the floor
    # A container's own namespace: its group is "/", the limit at the mount's root.
    self_cgroup.write_text("0::/\n")
    limit("memory.max", str(6 * 2**30))
    assert embedded_paths.memory_mb() == min(6144, machine)
    # A large machine: a quarter of its memory up to the cap, 8 GB.
    monkeypatch.setattr(embedded_paths, "memory_mb", lambda: 65536)
    assert embedded_paths.shared_buffers_mb() == 8192


def test_two_handles_in_one_process_share_the_server(home: Path) -> None:
    """Closing one of two handles a process holds (two Memory objects) must not stop the other's server."""
    from sqlalchemy import create_engine, text

    first, second = EmbeddedPostgres(home), EmbeddedPostgres(home)
    url = first.acquire()
    second.acquire()
    first.release()
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar_one() == 1
    finally:
        engine.dispose()
    second.release()
    assert not second._running()  # the last handle out stops it
