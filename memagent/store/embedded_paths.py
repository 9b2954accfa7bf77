"""Where an embedded cluster lives, and the server settings that depend only on the machine."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

ROOT_BASE = Path("/var/lib/memagent")
DATABASE = "memagent"
PORT = 5432
# Longest Unix socket path Linux accepts is 107 bytes; keep a margin.
MAX_SOCKET_PATH = 100
# Control groups (memory_mb): where they are mounted, and which one this process is in.
CGROUP_ROOT = Path("/sys/fs/cgroup")
SELF_CGROUP = Path("/proc/self/cgroup")


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
    """The embedded server's buffer cache (unless MEMAGENT_SHARED_BUFFERS_MB says): a quarter of the memory
    memagent may use, 128 MB to 8 GB.

    PostgreSQL's default 128 MB holds a sixth of the HNSW graph of 100k x 1536 vectors. What a recall or a
    store reads that the cache does not hold comes from the operating system's page cache, page by page: at
    110k x 1536 (1.7 GB of table and index) storing one memory measured p95 9.1 ms with 1 GB and 3.8 ms with
    3 GB; at 1M x 384 (5.1 GB of table and indexes) hybrid recall in a 100k namespace p95 62.8 ms with 1 GB,
    23.2-24.4 with 4 GB and 20.3-21.1 with 6 GB, where all of it fits (benchmarks/hybrid_scale.py,
    docs/benchmarks.md). The server takes the cache's memory as the data fills it (an idle, empty one held
    114 MB at 4 GB, 152 MB at 6 GB, 198 MB at 8 GB: the cap).
    """
    return int(max(128, min(8192, memory_mb() // 4)))


def memory_mb() -> int:
    """This machine's memory in MB, or the lowest memory limit of the control group memagent runs in and the
    groups above it, when that is lower (a container's, a systemd unit's MemoryMax: the machine's memory
    would overstate it)."""
    import psutil

    total = int(psutil.virtual_memory().total)
    for path in _cgroup_limit_files():
        try:
            limit = path.read_text().strip()
        except OSError:
            continue
        if limit.isdigit():  # "max" (cgroup v2) and v1's huge number are no limit; min() handles the latter
            total = min(total, int(limit))
    return total // 2**20


def _cgroup_limit_files() -> list[Path]:
    """The memory-limit files of this process's control group and of each group above it, cgroup v2
    (`memory.max`) and v1 (`memory.limit_in_bytes`), and the mount's root ones (a container's namespace)."""
    try:
        lines = SELF_CGROUP.read_text().splitlines()
    except OSError:
        lines = []
    files = []
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, group = rest.partition(":")
        if hierarchy == "0" and not controllers:
            base, name = CGROUP_ROOT, "memory.max"
        elif "memory" in controllers.split(","):
            base, name = CGROUP_ROOT / "memory", "memory.limit_in_bytes"
        else:
            continue
        path = PurePosixPath(group or "/")
        files += [base / str(ancestor).lstrip("/") / name for ancestor in (path, *path.parents)]
    return [*files, CGROUP_ROOT / "memory.max", CGROUP_ROOT / "memory" / "memory.limit_in_bytes"]


def is_root() -> bool:
    """Whether memagent runs as root (then PostgreSQL runs as a service user)."""
    return hasattr(os, "geteuid") and os.geteuid() == 0


def cluster_paths(home: Path) -> ClusterPaths:
    """The cluster belonging to a memagent home (as root: under /var/lib/memagent, keyed by the home)."""
    if is_root():
        key = hashlib.sha256(str(home).encode()).hexdigest()[:16]
        return ClusterPaths.for_base(ROOT_BASE / "clusters" / key)
    return ClusterPaths.for_base(home / "postgres")
