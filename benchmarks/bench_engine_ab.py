"""Interleaved A/B runs of bench_engine.py: a baseline checkout against this one.

    python benchmarks/bench_engine_ab.py BASELINE_DIR [--runs 6] [--rounds 3] [--n 10000]

``BASELINE_DIR`` is a plain export of an older commit (``git archive <commit> |
tar -x -C DIR``) with a ``turnout`` symlink to its ``engine`` and an
``engine/plugins`` symlink to its ``plugins``, so ``PYTHONPATH=DIR`` imports that
code instead of the installed checkout. Each run pins itself to core 0; runs
alternate (baseline first in even runs, this checkout first in odd ones), and
the table gives, per case, the median over runs of each run's p50, and the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROW = re.compile(r"^(.*?)\s+([\d.]+)\s+([\d.]+)\s+[\d.]+\S$")


def one_run(root: Path, pythonpath: str, rounds: int, n: int) -> dict[str, float]:
    pin = ["taskset", "-c", "0"] if shutil.which("taskset") else []
    script = root / "benchmarks" / "bench_engine.py"
    command = [*pin, sys.executable, str(script), "--rounds", str(rounds), "--n", str(n)]
    env = {**os.environ, "PYTHONPATH": pythonpath}
    out = subprocess.run(command, capture_output=True, text=True, env=env, cwd=root, check=True)
    rows = {}
    for line in out.stdout.splitlines():
        match = ROW.match(line)
        if match:
            rows[match.group(1).strip()] = float(match.group(2))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("baseline", type=Path)
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--n", type=int, default=10000)
    args = parser.parse_args()
    baseline = args.baseline.resolve()
    sides = {"baseline": (baseline, str(baseline)), "this": (ROOT, "")}
    p50s: dict[str, dict[str, list[float]]] = {"baseline": {}, "this": {}}
    loads = []
    for run in range(args.runs):
        order = ("baseline", "this") if run % 2 == 0 else ("this", "baseline")
        for side in order:
            root, pythonpath = sides[side]
            for case, p50 in one_run(root, pythonpath, args.rounds, args.n).items():
                p50s[side].setdefault(case, []).append(p50)
            loads.append(round(os.getloadavg()[0], 2))
    print(f"{args.runs} interleaved runs x {args.rounds} rounds x {args.n} calls; load: {loads}")
    print(f"{'case':52} {'base p50':>9} {'this p50':>9} {'ratio':>6}")
    for case, values in p50s["baseline"].items():
        base = statistics.median(values)
        this = statistics.median(p50s["this"].get(case, [float("nan")]))
        print(f"{case:52} {base:9.2f} {this:9.2f} {this / base:6.2f}")
    print(json.dumps(p50s))


if __name__ == "__main__":
    main()
