"""What a guardrail scan costs: normal prompts against the Python-regex
detectors they replaced, and 500 KB of adversarial text.

    python benchmarks/bench_guardrails.py [--rounds 7] [--ref main] [--raw FILE]

Times are CPU time of this process (``time.process_time``): the machines
these run on are shared, and wall time there mostly measures the neighbours.
``before`` is the detectors of git ref ``--ref`` (default ``main``), loaded from
git in this same run; ``after`` is the working tree. Normal prompts: µs per
scan, median over rounds. Adversarial texts (each ~500 KB, built to make a
backtracking engine go quadratic, or dense with candidates): ms per scan of
the new detectors only (the old ones take minutes on them: "aws key" + 20,000
spaces + "!" alone took 4.5 s). Target (issue 15): ≤ 50 ms per 500 KB.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from turnout.plugins.guardrails import pii, secrets  # noqa: E402
from turnout.plugins.guardrails.deny import Deny, DenyOptions  # noqa: E402

PROMPT = (
    "Summarise the attached meeting notes in three bullet points. The team agreed to move "
    "the launch to the second week of March, pending the security review, and asked the "
    "platform group for two more engineers until the migration is complete."
)
PII_PROMPT = PROMPT + " Contact jane.doe@example.com or card 4242 4242 4242 4242."
SECRET_PROMPT = PROMPT + " The key is sk-proj-a1B2c3D4e5F6g7H8i9J0a1B2 and AKIAABCDEFGHIJKLMNOP."
SIZE = 500_000

ADVERSARIAL = {
    "aws key + spaces + !": "aws key" + " " * SIZE + "!",
    "secret access + tabs": "secret access key" + "\t" * SIZE,
    "BEGIN headers, no END": "-----BEGIN PRIVATE KEY-----" * (SIZE // 27),
    "jwt starts": "eyJaaaaa-" * (SIZE // 9),
    "sk- repeated": "sk-" * (SIZE // 3),
    "email local part, no @host": "a." * (SIZE // 2) + "@",
    "email host labels": "x@" + "a." * (SIZE // 2),
    "digits": "1" * SIZE,
    "colons": ":" * SIZE,
    "dense card candidates": "1 " * (SIZE // 2),
    "non-ASCII dense": "é1 " * (SIZE // 3),
    "prose": (PROMPT + " ") * (SIZE // len(PROMPT)),
}


def old_detectors(ref: str) -> tuple[object, object]:
    """``Secrets`` and ``Pii`` as they were at ``ref``."""
    out = []
    for name in ("secrets", "pii"):
        source = subprocess.run(
            ["git", "show", f"{ref}:plugins/guardrails/{name}.py"],
            cwd=ROOT, capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        module = sys.modules[f"old_{name}"] = types.ModuleType(f"old_{name}")
        exec(compile(source, f"{ref}:{name}.py", "exec"), module.__dict__)
        out.append(getattr(module, "Secrets" if name == "secrets" else "Pii")())
    return out[0], out[1]


def per_call(scan, text: str, n: int) -> float:
    start = time.process_time_ns()
    for _ in range(n):
        scan(text)
    return (time.process_time_ns() - start) / n / 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--ref", default="main")
    parser.add_argument("--raw")
    args = parser.parse_args()
    old_secrets, old_pii = old_detectors(args.ref)
    new_secrets, new_pii = secrets.Secrets(), pii.Pii()
    lines = [f"# normal prompts, µs per scan (median of {args.rounds} rounds of {args.n})", ""]
    lines += ["| prompt | detector | before | after | after/before |", "|---|---|---:|---:|---:|"]
    prompts = (("plain", PROMPT), ("with PII", PII_PROMPT), ("with secrets", SECRET_PROMPT))
    for label, text in prompts:
        for name, old, new in (("secrets", old_secrets, new_secrets), ("pii", old_pii, new_pii)):
            before, after = [], []
            for _ in range(args.rounds):
                before.append(per_call(old.scan, text, args.n))
                after.append(per_call(new.scan, text, args.n))
            b, a = statistics.median(before), statistics.median(after)
            lines.append(f"| {label} | {name} | {b:.2f} | {a:.2f} | {a / b:.2f} |")
    deny = Deny(DenyOptions(patterns=[r"(a+)+$", r"internal[- ]only"], keywords=["drop table"]))
    title = f"# adversarial text (~{SIZE // 1000} KB), ms per scan, median of {args.rounds}"
    lines += ["", title, ""]
    lines += ["| text | secrets | pii | deny `(a+)+$` |", "|---|---:|---:|---:|"]
    for label, text in ADVERSARIAL.items():
        row = []
        for scan in (new_secrets.scan, new_pii.scan, deny.scan):
            times = []
            for _ in range(args.rounds):
                start = time.process_time()
                scan(text)
                times.append((time.process_time() - start) * 1000)
            row.append(statistics.median(times))
        lines.append(f"| {label} | {row[0]:.1f} | {row[1]:.1f} | {row[2]:.1f} |")
    output = "\n".join(lines)
    print(output)
    if args.raw:
        Path(args.raw).write_text(output + "\n")


if __name__ == "__main__":
    main()
