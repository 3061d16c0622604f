#!/usr/bin/env bash
# Set up a fresh machine for RegistrationQuality: a virtual environment in .venv with the package and its
# test extra, plus (when run as root on Debian/Ubuntu) the system packages the tests use: Mesa EGL for
# offscreen rendering, elastix/transformix and plastimatch as independent references, Chromium to look at
# the HTML report and chromedriver to drive the cohort review page. Without root those tests skip with a
# stated reason.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test]'
if [ "${RQ_SKIP_APT:-0}" != 1 ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  pkgs="libegl1 libegl-mesa0 libgl1-mesa-dri elastix plastimatch chromium chromium-driver"
  missing=""
  for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
  if [ -n "$missing" ]; then
    echo "setup: installing Debian packages:$missing" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing) \
      >/dev/null 2>&1 || echo "setup: apt-get install failed; tests needing$missing will skip" >&2
  fi
fi
