"""Wall time of memagent commands on the embedded defaults (the bundled local model), whole processes.

first     = the very first command in a fresh MEMAGENT_HOME (initdb, migrations, model)
warm      = later commands, median of --runs: with MEMAGENT_LINGER left at its default (the embedded server
            and the command server stay up between commands), and with MEMAGENT_LINGER=0 (every command in
            its own process, starting and stopping the server), for comparison
breakdown = where an in-process command's time goes: the interpreter, the imports (python -X importtime,
            top-level packages), and memagent's own steps (cProfile)

    python benchmarks/cli_latency.py --runs 5
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STORY = "My name is Priya and I'm building a Rust compiler for embedded targets"
QUESTION = "what project am I working on?"


def run(env: dict[str, str], *args: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "memagent", *args], env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def wait_for_server(home: Path) -> None:
    from memagent.cli.client import socket_path

    deadline = time.monotonic() + 30
    while not socket_path(home).exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def medians(env: dict[str, str], runs: int) -> dict[str, float]:
    times: dict[str, list[float]] = {"inspect --limit 5": [], "remember": [], "recall": []}
    for i in range(runs):
        times["inspect --limit 5"].append(run(env, "inspect", "--limit", "5"))
        times["remember"].append(run(env, "remember", f"memory number {i} about something else"))
        times["recall"].append(run(env, "recall", QUESTION))
    return {name: statistics.median(values) for name, values in times.items()}


def import_breakdown(env: dict[str, str]) -> list[tuple[str, float]]:
    """Cumulative import time of the top-level packages a warm in-process recall loads."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "memagent", "recall", QUESTION],
        env=env | {"MEMAGENT_LINGER": "0"},
        capture_output=True,
        text=True,
        check=True,
    )
    totals: dict[str, float] = {}
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = (part.strip() for part in line.removeprefix("import time:").split("|"))
        if not name.startswith(" ") and "." not in name.strip():  # a top-level import
            top = name.strip()
            totals[top] = totals.get(top, 0.0) + int(cumulative) / 1e6
    return sorted(totals.items(), key=lambda item: -item[1])[:12]


def step_breakdown(home: Path) -> list[tuple[str, float]]:
    """memagent's own steps in a warm in-process recall (cumulative seconds, from cProfile)."""
    os.environ.update({"MEMAGENT_HOME": str(home), "MEMAGENT_LINGER": "0"})
    from memagent.cli.app import app

    profile = cProfile.Profile()
    profile.enable()
    try:
        app(["recall", QUESTION], standalone_mode=False)
    finally:
        profile.disable()
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    wanted = {
        "acquire": "embedded server: start or join",
        "release": "embedded server: leave (or stop)",
        "ensure_at_head": "schema check",
        "_open": "open memagent (all of it)",
        "_load": "local model: load",
        "embed": "local model: embed the query",
        "search": "the recall query",
    }
    found: dict[str, float] = {}
    for (_, _, function), (_, _, _, cumulative, _) in stats.items():
        if function in wanted:
            found[wanted[function]] = max(found.get(wanted[function], 0.0), cumulative)
    return sorted(found.items(), key=lambda item: -item[1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5, help="runs of each warm command")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="memagent-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEMAGENT_", "OPENAI_"))}
    env["MEMAGENT_HOME"] = str(home)
    try:
        first = run(env, "remember", STORY)
        wait_for_server(home)
        lingering = medians(env, args.runs)
        separate = medians(env | {"MEMAGENT_LINGER": "0"}, args.runs)
        subprocess.run([sys.executable, "-m", "memagent", "stop"], env=env, capture_output=True, check=False)
        print(f"first command in a fresh home (remember): {first:.2f} s")
        print(f"{'command':<20} {'default (lingering)':>20} {'MEMAGENT_LINGER=0':>18}")
        for name in lingering:
            print(f"{name:<20} {lingering[name]:>18.2f} s {separate[name]:>16.2f} s")
        print("imports of an in-process recall (cumulative, top-level packages):")
        for name, seconds in import_breakdown(env):
            print(f"  {name:<28} {seconds:.3f} s")
        print("memagent's steps in an in-process recall (cumulative):")
        for name, seconds in step_breakdown(home):
            print(f"  {name:<34} {seconds:.3f} s")
    finally:
        from memagent.cli.client import stop_server
        from memagent.store.embedded import EmbeddedPostgres

        stop_server(home)
        EmbeddedPostgres(home).destroy()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
