"""The command server: `python -m memagent.cli.server HOME LINGER`, started by memagent.cli.client.

It imports what every command needs once, then waits on a Unix socket (0600, in the home) for commands of
its own user. Each command runs in a child forked from it, with the client's stdin, stdout and stderr, its
environment and its working folder: settings are read afresh per command, and a command behaves exactly as
in its own process (the embedded server sees the child as its client). The server itself holds no database
connection and no state; it exits after LINGER seconds without a command, on `memagent stop`, or when a
client brings newer code (the client then runs the command itself and starts a new server).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import struct
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from memagent.cli.client import fingerprint, private_folder, socket_path

MAX_MESSAGE = 1 << 24


def _receive(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
    header, fds, _, _ = socket.recv_fds(conn, 4 + MAX_MESSAGE, 3)
    if len(header) < 4:
        raise ConnectionError("no request")
    size = struct.unpack("!I", header[:4])[0]
    body = header[4:]
    while len(body) < size:
        piece = conn.recv(size - len(body))
        if not piece:
            raise ConnectionError("request cut short")
        body += piece
    return json.loads(body.decode("utf-8")), list(fds)


def _warm() -> None:
    """Import what commands use, so that a forked child starts with it loaded."""
    import sqlalchemy.orm

    import memagent.bootstrap
    import memagent.cli.app
    import memagent.cli.render
    import memagent.usecases.transfer  # noqa: F401

    sqlalchemy.orm.configure_mappers()


def _child(conn: socket.socket, listener: socket.socket, request: dict[str, Any], fds: list[int]) -> None:
    """Run one command as if this were its own process; never returns."""
    listener.close()
    os.setpgid(0, 0)  # its own process group: Ctrl-C reaches what it runs too (psql cancels its query)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminate)  # its caller gone: unwind (release the database) and end
    for number, fd in enumerate(fds):
        os.dup2(fd, number)
        os.close(fd)
    sys.stdin = open(0, encoding="utf-8", errors="surrogateescape", closefd=False)  # noqa: SIM115
    sys.stdout = io.TextIOWrapper(open(1, "wb", closefd=False), line_buffering=os.isatty(1))  # noqa: SIM115
    sys.stderr = io.TextIOWrapper(open(2, "wb", closefd=False), line_buffering=True)  # noqa: SIM115
    os.environ.clear()
    os.environ.update(request["env"])
    os.environ["MEMAGENT_SERVED_BY"] = str(os.getppid())  # `memagent config` says so
    time.tzset()  # the caller's TZ
    os.umask(int(request.get("umask", 0o022)))  # files it creates get the caller's permissions
    code = 1
    try:
        os.chdir(request["cwd"])
        sys.argv = ["memagent", *request["argv"]]
        conn.sendall(b"R")
        threading.Thread(target=_watch, args=(conn,), daemon=True).start()
        from memagent.cli.app import main

        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        # The client leaves once it has the exit code and _watch answers that with SIGTERM: from here on
        # it ends the process at once rather than raise SystemExit on the way out.
        signal.signal(signal.SIGTERM, lambda signum, frame: os._exit(128 + signum))
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError):
                stream.flush()
        with contextlib.suppress(OSError):
            conn.sendall(b"X" + struct.pack("!i", code))
        os._exit(code)


def _watch(conn: socket.socket) -> None:
    """Ctrl-C at the client interrupts the command and what it runs; the client going away ends it."""
    while True:
        try:
            data = conn.recv(1)
        except OSError:
            data = b""
        if data == b"\x03":
            os.killpg(os.getpgid(0), signal.SIGINT)  # as the terminal would: the whole process group
        elif not data:
            os.kill(os.getpid(), signal.SIGTERM)
            return


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def serve(home: Path, linger: float) -> None:
    """Serve commands until `linger` seconds pass without one."""
    from filelock import FileLock, Timeout

    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock = FileLock(str(home / "cli-server.lock"))
    try:
        # One server per home; released when this process ends, however it ends. A few seconds' wait: a
        # server replaced for newer code may still be exiting.
        lock.acquire(timeout=5)
    except Timeout:
        return
    _warm()
    path = socket_path(home)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    if not private_folder(path):
        return  # a folder another user could write in (or a link): never listen there
    path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_mask = os.umask(0o177)
    try:
        listener.bind(str(path))
    finally:
        os.umask(old_mask)
    mine_inode = path.stat().st_ino
    listener.listen(16)
    listener.settimeout(linger)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    mine = fingerprint()
    server = os.getpid()
    try:
        while True:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                return
            conn.settimeout(None)
            with conn:
                peer = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
                if peer[1] != os.getuid():
                    continue  # only this server's own user may run commands in it
                try:
                    request, fds = _receive(conn)
                except (OSError, ValueError, ConnectionError):
                    continue
                if request.get("stop"):
                    _close(listener, path, mine_inode)  # gone before `memagent stop` hears back
                    return
                if request.get("fingerprint") != mine:
                    conn.sendall(b"S")  # newer code: the client runs the command and starts a new server
                    return
                if os.fork() == 0:
                    try:
                        _child(conn, listener, request, fds)
                    finally:
                        os._exit(1)  # whatever happens, the child never runs the server's code below
                listener.settimeout(linger)  # idle again from now
                for fd in fds:
                    os.close(fd)
    finally:
        if os.getpid() != server:  # a forked child that got here (a signal before its try): never clean up
            os._exit(1)
        try:
            _close(listener, path, mine_inode)
        finally:
            lock.release()


def _close(listener: socket.socket, path: Path, inode: int) -> None:
    """Stop listening and remove the socket, unless it is already a newer server's."""
    listener.close()
    try:
        if path.stat().st_ino == inode:
            path.unlink()
    except FileNotFoundError:
        pass


if __name__ == "__main__":
    serve(Path(sys.argv[1]), float(sys.argv[2]))
