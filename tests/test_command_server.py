"""The warm command server: commands run in a child of it exactly as in their own process — their own
environment, working folder (and its .env), stdin, stdout, exit code and Ctrl-C — and it never serves stale
code, another user, or outlives `memagent stop`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from memagent.cli.client import socket_path
from tests.conftest import process_env, provider_env
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

    def slow_chat() -> subprocess.Popen[str]:
        fake.failures = [Failure(500, delay=30, path="/chat/completions")]
        before = len(fake.chat_requests())
        client = subprocess.Popen(
            [sys.executable, "-m", "memagent", "chat", "-m", "are you there?"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 30
        while len(fake.chat_requests()) == before:  # the command waits on the model now
            assert time.monotonic() < deadline
            time.sleep(0.05)
        return client

    client = slow_chat()
    client.send_signal(signal.SIGINT)
    _, stderr = client.communicate(timeout=20)
    assert client.returncode == 130 and "interrupted" in stderr

    client = slow_chat()
    assert server.children(), "the command runs in a child of the server"
    client.kill()  # kill -9: the child must not run on without it
    client.wait()
    deadline = time.monotonic() + 10
    while server.children():
        assert time.monotonic() < deadline, "the command outlived its client"
        time.sleep(0.1)
    memagent(env, "stop")
