#!/usr/bin/env bash
# The README's test command: set up (scripts/setup.sh), lint, run the whole headless test suite.
# Extra arguments go to pytest. Fails when no test ran (pytest exit 5).
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
export VTK_DEFAULT_OPENGL_WINDOW=vtkEGLRenderWindow
.venv/bin/ruff check . || exit 1
.venv/bin/python -m pytest -q "$@"
rc=$?
if [ "$rc" = 5 ]; then
  echo "test.sh: no tests were collected: failing" >&2
  exit 1
fi
exit "$rc"
