#!/usr/bin/env bash
# The test command: a virtualenv with the project and its dev extra, the system
# services the tests start themselves (redis-server), then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv
.venv/bin/pip install -q -e '.[dev]'

if ! command -v redis-server >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing redis-server (the Redis tests start their own on a free port)"
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server) >/dev/null
    else
        echo "redis-server not found and not root: the Redis tests will be skipped" >&2
    fi
fi

# the dashboard's browser test drives Debian's Chromium through its chromedriver
if ! command -v chromedriver >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing chromium and chromium-driver (the dashboard's browser test)"
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) >/dev/null
    else
        echo "chromedriver not found and not root: the browser test will be skipped" >&2
    fi
fi

# Hypothesis runs derandomized (profile "ci" in tests/conftest.py): the same
# examples every run. TURNOUT_HYPOTHESIS=explore bash scripts/test.sh explores
# with fresh random seeds instead.
export TURNOUT_HYPOTHESIS="${TURNOUT_HYPOTHESIS:-ci}"
exec .venv/bin/pytest "$@"
