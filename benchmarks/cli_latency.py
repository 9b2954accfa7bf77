"""Wall time of `memagent remember` / `memagent recall` on the embedded defaults, cold and warm.

cold  = the very first command in a fresh MEMAGENT_HOME (initdb, migration, model load)
warm  = later commands (server start/stop per command, model load per process, OS caches warm)

    python benchmarks/cli_latency.py --runs 5
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(env: dict[str, str], *args: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "memagent", *args], env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5, help="warm runs of each command")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="memagent-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEMAGENT_", "OPENAI_"))}
    env["MEMAGENT_HOME"] = str(home)
    try:
        cold_remember = run(
            env, "remember", "My name is Priya and I'm building a Rust compiler for embedded targets"
        )
        warm_remember = [
            run(env, "remember", f"Memory number {i} about something else") for i in range(args.runs)
        ]
        warm_recall = [run(env, "recall", "what project am I working on?") for _ in range(args.runs)]
        # A cold recall: a fresh home holding one memory, measured on its first recall... the server is
        # initialised by the remember, so "cold" for recall means first recall after that remember.
        print(f"cold remember (fresh home: initdb + migrate + model): {cold_remember:.2f} s")
        print(
            f"warm remember: median {statistics.median(warm_remember):.2f} s, min {min(warm_remember):.2f} s"
        )
        print(f"warm recall:   median {statistics.median(warm_recall):.2f} s, min {min(warm_recall):.2f} s")
    finally:
        from memagent.store.embedded import EmbeddedPostgres

        EmbeddedPostgres(home).destroy()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
