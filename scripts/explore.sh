#!/usr/bin/env bash
# Bug hunting beyond CI: CI runs the Hypothesis tests derandomized (the same
# examples every run); this runs every Hypothesis test (pytest -m hypothesis)
# RUNS times, each with a fresh random seed, and stops at the first failure with
# the seed that replays it:
#   bash scripts/explore.sh [RUNS, default 50] [pytest args, e.g. tests/reliability]
# A failure found this way belongs in its test as an @example(...) once fixed.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-50}"
shift || true
for i in $(seq 1 "$runs"); do
    seed=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')
    echo "run $i/$runs: --hypothesis-seed=$seed"
    if ! TURNOUT_HYPOTHESIS=explore .venv/bin/pytest -q -p no:cacheprovider -m hypothesis \
        --hypothesis-seed="$seed" "$@"; then
        echo "failed: replay with TURNOUT_HYPOTHESIS=explore .venv/bin/pytest -m hypothesis --hypothesis-seed=$seed $*" >&2
        exit 1
    fi
done
echo "$runs runs passed"
