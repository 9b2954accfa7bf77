"""Where an embedded cluster lives, and the server settings that depend only on the machine."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

ROOT_BASE = Path("/var/lib/memagent")
DATABASE = "memagent"
PORT = 5432
# Longest Unix socket path Linux accepts is 107 bytes; keep a margin.
MAX_SOCKET_PATH = 100


@dataclass(frozen=True)
class ClusterPaths:
    """Where one embedded cluster keeps its files."""

    base: Path  # owned by the user running postgres, 0700
    data: Path
    log: Path
    lock: Path
    clients: Path

    @classmethod
    def for_base(cls, base: Path) -> ClusterPaths:
        return cls(
            base=base,
            data=base / "data",
            log=base / "server.log",
            lock=base / "cluster.lock",
            clients=base / "clients",
        )


def shared_buffers_mb() -> int:
    """The embedded server's buffer cache: an eighth of this machine's memory, 128 MB to 1 GB.

    PostgreSQL's default 128 MB holds a sixth of the HNSW graph of 100k x 1536 vectors; at 1 GB the graph
    stays in memory and a single-row INSERT measured p95 6.8 ms instead of 12.6 ms (benchmarks/store_one.py,
    docs/benchmarks.md).
    """
    import psutil

    total_mb = psutil.virtual_memory().total // 2**20
    return int(max(128, min(1024, total_mb // 8)))


def is_root() -> bool:
    """Whether memagent runs as root (then PostgreSQL runs as a service user)."""
    return hasattr(os, "geteuid") and os.geteuid() == 0


def cluster_paths(home: Path) -> ClusterPaths:
    """The cluster belonging to a memagent home (as root: under /var/lib/memagent, keyed by the home)."""
    if is_root():
        key = hashlib.sha256(str(home).encode()).hexdigest()[:16]
        return ClusterPaths.for_base(ROOT_BASE / "clusters" / key)
    return ClusterPaths.for_base(home / "postgres")
