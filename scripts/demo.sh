#!/usr/bin/env bash
# The README's demo command: set up (scripts/setup.sh) and evaluate the bundled sample case's good and
# imperfect registrations; the reports land in ./rq-demo (or the folder given as first argument).
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
export VTK_DEFAULT_OPENGL_WINDOW=vtkEGLRenderWindow
.venv/bin/registration-quality --verbose demo --output "${1:-rq-demo}"
