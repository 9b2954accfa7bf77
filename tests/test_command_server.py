"""The warm command server: commands run in a child of it exactly as in their own process — their own
environment, working folder (and its .env), stdin, stdout, exit code and Ctrl-C — and it never serves stale
code, another user, or outlives `memagent stop`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from memagent.cli.client import socket_path
from memagent.store.embedded import EmbeddedPostgres
from tests.conftest import memagent_command, process_env, provider_env, removed_after
from tests.fake_openai import Failure, FakeOpenAI

ROOT = Path(__file__).resolve().parent.parent


def served_env(home: Path, fake: FakeOpenAI, **extra: str) -> dict[str, str]:
    return process_env(MEMAGENT_HOME=str(home), MEMAGENT_LINGER="30", MEMAGENT_MAX_RETRIES="0") | {
        **provider_env(fake),
        **extra,
    }


def memagent(
    env: dict[str, str], *args: str, stdin: str | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "memagent", *args],
        env=env,
        input=stdin,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def wait_for_server(home: Path) -> None:
    deadline = time.monotonic() + 30
    while not socket_path(home).exists():
        assert time.monotonic() < deadline, "the command server did not start"
        time.sleep(0.1)


def served_by(env: dict[str, str], cwd: Path | None = None) -> str:
    return str(json.loads(memagent(env, "config", "--json", cwd=cwd).stdout)["command server"])


def test_commands_run_in_the_server_as_in_their_own_process(
    home: Path, fake: FakeOpenAI, tmp_path: Path
) -> None:
    env = served_env(home, fake)
    first = memagent(env, "remember", "the first memory, in its own process")
    assert first.returncode == 0, first.stderr
    wait_for_server(home)
    assert served_by(env).startswith("this command ran in it")

    # Its own environment per command...
    assert (
        memagent(env | {"MEMAGENT_NAMESPACE": "elsewhere"}, "remember", "in another namespace").returncode
        == 0
    )
    listed = json.loads(memagent(env, "inspect", "--json").stdout)
    assert [m["content"] for m in listed] == ["the first memory, in its own process"]
    # ...its own working folder and .env...
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / ".env").write_text("MEMAGENT_NAMESPACE=from-dotenv\n")
    assert memagent(env, "remember", "read from the .env", cwd=folder).returncode == 0
    assert (
        json.loads(memagent(env | {"MEMAGENT_NAMESPACE": "from-dotenv"}, "inspect", "--json").stdout)[0][
            "content"
        ]
        == "read from the .env"
    )
    # ...its stdin, stdout, stderr and exit code.
    piped = memagent(env, "remember", stdin="piped in on stdin\n")
    assert piped.returncode == 0 and "Remembered as memory" in piped.stderr
    refused = memagent(env, "recall", "x", "--k", "0")
    assert refused.returncode == 2 and refused.stderr.startswith("Error: k must be between 1 and 1000")
    assert served_by(env).startswith("this command ran in it")

    stopped = memagent(env, "stop")
    assert "Stopped the command server" in stopped.stderr
    assert not socket_path(home).exists()


def test_newer_code_is_never_served_by_an_older_server(home: Path, fake: FakeOpenAI) -> None:
    env = served_env(home, fake)
    memagent(env, "inspect")
    wait_for_server(home)
    assert served_by(env).startswith("this command ran in it")
    changed = ROOT / "memagent" / "wording.py"
    os.utime(changed)  # as an upgrade or an edit would
    assert served_by(env) == "not used for this command"  # run here, and a new server started
    wait_for_server(home)
    assert served_by(env).startswith("this command ran in it")
    memagent(env, "stop")


def test_ctrl_c_reaches_the_command_and_a_vanished_client_ends_it(home: Path, fake: FakeOpenAI) -> None:
    env = served_env(home, fake, MEMAGENT_CHAT_TIMEOUT="60")
    memagent(env, "inspect")
    wait_for_server(home)
    server = next(
        p
        for p in psutil.process_iter(["cmdline"])
        if "memagent.cli.server" in (p.info["cmdline"] or []) and str(home) in (p.info["cmdline"] or [])
    )

    def slow_chat(ctrl_c: str = "interrupts") -> subprocess.Popen[str]:
        fake.failures = [Failure(500, delay=30, path="/chat/completions")]
        before = len(fake.reply_requests())
        client = subprocess.Popen(
            memagent_command("chat", "-m", "are you there?", ctrl_c=ctrl_c),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 30
        while len(fake.reply_requests()) == before:  # the command waits on the model now
            assert time.monotonic() < deadline
            time.sleep(0.05)
        return client

    client = slow_chat()
    client.send_signal(signal.SIGINT)
    _, stderr = client.communicate(timeout=20)
    assert client.returncode == 130 and "interrupted" in stderr

    client = slow_chat(ctrl_c="ignored")  # as `memagent chat … &` in a script: Ctrl-C ignored, as it is here
    children = server.children()
    assert children, "the command runs in a child of the server"
    client.send_signal(signal.SIGINT)
    time.sleep(1)
    assert client.poll() is None and server.children() == children, "the command went on"
    client.kill()  # kill -9: the child must not run on without it
    client.wait()
    deadline = time.monotonic() + 10
    while server.children():
        assert time.monotonic() < deadline, "the command outlived its client"
        time.sleep(0.1)
    # ...and it unwound on its way out: its registration with the embedded server is gone.
    registered = [entry.name for entry in EmbeddedPostgres(home).paths.clients.iterdir()]
    assert not [name for name in registered if name.startswith(f"{children[0].pid}.")]
    memagent(env, "stop")


@pytest.fixture
def long_home(tmp_path: Path) -> Iterator[Path]:
    yield from removed_after(tmp_path / ("h" * 100))


def test_a_socket_folder_others_may_write_in_is_never_used(fake: FakeOpenAI, long_home: Path) -> None:
    """With a long home path the socket lives under /tmp/memagent-<uid>/: if that folder is not private,
    another user could listen there and receive the command's environment and files. It is not used."""
    home = long_home
    folder = socket_path(home).parent
    assert str(folder).startswith("/tmp/memagent-")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(mode=0o777)
    folder.chmod(0o777)
    try:
        env = served_env(home, fake)
        assert memagent(env, "remember", "stays in its own process").returncode == 0
        time.sleep(2)
        assert served_by(env) == "not used for this command"
        assert not socket_path(home).exists()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_served_commands_keep_the_callers_umask_time_zone_name_and_closed_stdin(
    home: Path, fake: FakeOpenAI, tmp_path: Path
) -> None:
    env = served_env(home, fake)
    memagent(env, "remember", "a memory to export")
    wait_for_server(home)
    target = tmp_path / "private.jsonl"
    exported = subprocess.run(
        ["sh", "-c", f"umask 077 && {sys.executable} -m memagent export -o {target}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert exported.returncode == 0, exported.stderr
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    for zone in ("Pacific/Kiritimati", "UTC"):
        served = json.loads(memagent(env | {"TZ": zone}, "inspect", "--json").stdout)
        assert served  # the JSON dates are exact; the table shows local time:
        table = memagent(env | {"TZ": zone}, "inspect").stdout
        local = subprocess.run(
            [sys.executable, "-m", "memagent", "inspect"],
            env=env | {"TZ": zone, "MEMAGENT_LINGER": "0"},
            capture_output=True,
            text=True,
        ).stdout
        assert table == local
    usage = memagent(env, "recall")
    assert usage.returncode == 2 and "Usage: memagent recall" in usage.stderr
    closed = subprocess.run(
        [sys.executable, "-m", "memagent", "remember", "-"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: os.close(0),
    )
    # A closed stdin reads as an empty one (/dev/null), never as the server's socket: one line, no hang.
    assert closed.returncode == 2 and closed.stderr.strip() == "Error: the text is empty."


def test_stop_starts_nothing_and_one_reaper_serves_a_run_of_commands(home: Path, fake: FakeOpenAI) -> None:
    env = served_env(home, fake)
    assert memagent(env, "stop").returncode == 0
    time.sleep(2)
    assert not socket_path(home).exists(), "`memagent stop` started a server"
    for _ in range(5):
        memagent(env | {"MEMAGENT_LINGER": "30"}, "inspect")

    def reapers() -> list[psutil.Process]:
        return [
            p
            for p in psutil.process_iter(["cmdline"])
            if "memagent.store.reaper" in (p.info["cmdline"] or []) and str(home) in (p.info["cmdline"] or [])
        ]

    assert len(reapers()) == 1
    memagent(env, "stop")
    deadline = time.monotonic() + 10
    while reapers():
        assert time.monotonic() < deadline, "the reaper outlived `memagent stop`"
        time.sleep(0.1)
