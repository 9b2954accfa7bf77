"""Creating an embedded cluster: initdb into a scratch folder, memagent's settings, then rename into place."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from memagent.errors import EmbeddedServerError
from memagent.store.embedded_paths import ClusterPaths

Run = Callable[..., subprocess.CompletedProcess[str]]


def initialise(paths: ClusterPaths, initdb: Path, run: Run) -> None:
    """Create the cluster if it does not exist (run: runs a server binary as the cluster's owner)."""
    data = paths.data
    if (data / "PG_VERSION").exists():
        return
    # initdb into a scratch folder and rename, so a killed initdb never leaves a half cluster behind.
    scratch = paths.base / "data.init"
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.rmtree(data, ignore_errors=True)
    result = run(
        [
            str(initdb),
            "-D",
            str(scratch),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-instructions",
        ],
        timeout=300,
    )
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["initdb failed"])[-1]
        raise EmbeddedServerError(f"could not initialise the embedded database in {scratch}: {last}")
    with open(scratch / "postgresql.conf", "a", encoding="utf-8") as conf:
        conf.write(
            "\n# memagent: Unix socket only, readable by the cluster's owner only\n"
            "listen_addresses = ''\n"
            "unix_socket_permissions = 0700\n"
            "max_connections = 50\n"
            "maintenance_work_mem = '256MB'\n"
        )
    scratch.rename(data)
