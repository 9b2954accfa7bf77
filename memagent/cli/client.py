"""The command client: hand a `memagent` command to the warm command server, or run it here.

Importing SQLAlchemy, pydantic and the rest costs most of a second per process; a command server
(memagent.cli.server) keeps them imported and forks a fresh child per command. This module decides, with
the standard library only, whether such a server is there for this user and home; the command then runs in
a child of the server with this process's stdin, stdout and stderr (passed over a Unix socket), environment
and working folder, exactly as it would here. When there is none, the command runs in this process and a
server is started for the next one. MEMAGENT_LINGER=0 turns it off.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

PROTOCOL = 1
MAX_SOCKET_PATH = 100  # Linux allows 107 bytes for a Unix socket path; keep a margin


@functools.cache
def _dotenv() -> dict[str, str | None]:
    """./.env as pydantic-settings reads it (python-dotenv, which it depends on)."""
    from dotenv import dotenv_values

    try:
        return dict(dotenv_values(".env"))
    except (OSError, UnicodeDecodeError):
        return {}


def setting(name: str, default: str) -> str:
    """A MEMAGENT_ setting as the command would see it: the environment first, then ./.env."""
    if name in os.environ:
        return os.environ[name]
    value = _dotenv().get(name)
    return default if value is None else value


def home() -> Path:
    """MEMAGENT_HOME, else the user's data folder (what memagent.config.Settings.home_path gives)."""
    configured = setting("MEMAGENT_HOME", "")
    if configured:
        return Path(configured).expanduser().resolve()
    import platformdirs

    return platformdirs.user_data_path("memagent").resolve()


def socket_path(where: Path) -> Path:
    """The server's socket: in the home, or (for a long home path) in a private folder under /tmp."""
    path = where / "cli.sock"
    if len(str(path)) <= MAX_SOCKET_PATH:
        return path
    key = hashlib.sha256(str(where).encode()).hexdigest()[:16]
    return Path("/tmp") / f"memagent-{os.getuid()}" / f"{key}.sock"


def private_folder(path: Path) -> bool:
    """Whether the socket's folder is a real folder (not a link) of this user's that nobody else may write
    in: no other user can then put a socket of theirs where memagent looks for its own."""
    import stat

    try:
        info = os.lstat(path.parent)
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o022


def fingerprint() -> str:
    """What the server's code must match: the interpreter and memagent's files as they are now."""
    package = Path(__file__).resolve().parent.parent
    newest = max((p.stat().st_mtime_ns for p in package.rglob("*.py")), default=0)
    return f"{PROTOCOL}|{sys.executable}|{sys.version}|{package}|{newest}"


def start_server(where: Path, linger: float) -> None:
    """Start a command server for this home once this command is done (it exits after `linger` idle
    seconds). Not before: on two cores its imports would slow the command down."""
    import atexit

    atexit.register(_spawn, where, linger)


def _spawn(where: Path, linger: float) -> None:
    subprocess.Popen(
        [sys.executable, "-m", "memagent.cli.server", str(where), str(linger)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )


def send(sock: socket.socket, message: Mapping[str, object], fds: list[int] | None = None) -> None:
    """A length-prefixed JSON message, with file descriptors alongside."""
    body = json.dumps(message).encode("utf-8")
    data = struct.pack("!I", len(body)) + body
    if fds:
        socket.send_fds(sock, [data], fds)
    else:
        sock.sendall(data)


def run_via_server(argv: list[str]) -> int | None:
    """Run the command in the command server and return its exit code; None: run it in this process."""
    try:
        linger = float(setting("MEMAGENT_LINGER", "60"))
    except ValueError:
        return None  # the command itself reports the invalid setting
    if linger <= 0:
        return None
    # A closed stdin, stdout or stderr would be taken by the socket below and handed to the command as
    # its own: give the command /dev/null there, as the shell would.
    for fd in (0, 1, 2):
        if not _is_open(fd):
            os.dup2(os.open(os.devnull, os.O_RDWR), fd)
    where = home()
    path = socket_path(where)
    starting = argv[:1] != ["stop"]  # `memagent stop` never starts what it stops
    if not private_folder(path):
        if starting and not path.parent.exists():
            start_server(where, linger)  # it creates the folder, privately
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
        peer = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    except OSError:
        sock.close()
        if starting:
            start_server(where, linger)
        return None
    with sock:
        if peer[1] != os.getuid():  # not our own server: never hand it our environment or files
            return None
        try:
            umask = os.umask(0)
            os.umask(umask)
            request = {
                "fingerprint": fingerprint(),
                "argv": argv,
                "env": dict(os.environ),
                "cwd": os.getcwd(),
                "umask": umask,
            }
            send(sock, request, [0, 1, 2])
            answer = sock.recv(1)
        except OSError:
            return None
        if answer != b"R":  # the server runs older code (it exits now) or refused: run here, start anew
            if starting:
                start_server(where, linger)
            return None
        return _wait(sock)


def _wait(sock: socket.socket) -> int:
    """Wait for the command's exit code, passing Ctrl-C on to it (unless this process ignores Ctrl-C, as a
    shell's background job does: then nothing is passed on, as nothing would reach the command run here)."""

    def interrupt(signum: int, frame: object) -> None:
        with contextlib.suppress(OSError):
            sock.sendall(b"\x03")

    ignored = signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN if ignored else interrupt)
    try:
        data = b""
        while len(data) < 5:
            try:
                piece = sock.recv(5 - len(data))
            except InterruptedError:
                continue
            if not piece:
                sys.stderr.write("Error: memagent's command process ended without an exit code.\n")
                return 1
            data += piece
        return int(struct.unpack("!i", data[1:5])[0])
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


def stop_server(where: Path) -> bool:
    """Ask the command server of this home to exit now; True if one was running."""
    path = socket_path(where)
    if not private_folder(path):
        return False
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except OSError:
        sock.close()
        return False
    with sock, contextlib.suppress(OSError):  # (a server exiting meanwhile closes the connection)
        send(sock, {"stop": True})
        sock.settimeout(5)
        sock.recv(1)  # the server closes the connection once its socket is gone
    return True
