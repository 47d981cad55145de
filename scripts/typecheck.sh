#!/usr/bin/env bash
# mypy over the installed import name: `turnout` is engine/ (pyproject's
# package-dir), which mypy cannot see through setuptools' editable import hook,
# so it reads engine/ through a link named turnout.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p build/typecheck
ln -sfn "$PWD/engine" build/typecheck/turnout
cd build/typecheck
exec ../../.venv/bin/mypy --config-file ../../pyproject.toml -p turnout "$@"
