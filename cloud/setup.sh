#!/usr/bin/env bash
# The rented machine's environment, built from the lock whatever `python3` its image has. SkyPilot's default GPU
# images are Ubuntu 22.04, whose python3 is 3.10 (often without pip or venv), and the locks are resolved for one
# Python (their header: "make lock (for Python 3.11 on ...)"). So: uv, pinned and hash-checked from
# requirements/uv.lock (tools/fetch_uv.py, standard library only), provides that Python: the machine's own when it
# has that version, else a uv-managed CPython; then `make install` builds .venv from the lock as on any machine.
# Why not a container image with Python 3.11: it would pin a CUDA user-space of its own beside the driver, and the
# same task would need another image per cloud; uv needs nothing but python3 and the package index.
#
#   LOCK=requirements/cuda.lock bash cloud/setup.sh      (the task's `setup:`; LOCK defaults to the CUDA lock)
set -euo pipefail
cd "$(dirname "$0")/.."
lock="${LOCK:-requirements/cuda.lock}"
want=$(sed -n 's/.*make lock (for Python \([0-9][0-9]*\.[0-9][0-9]*\) on .*/\1/p' "$lock" | head -n 1)
[ -n "$want" ] || { echo "error: $lock: no 'make lock (for Python X.Y on ...)' header; run make lock" >&2; exit 2; }
# make runs the install; a C compiler builds the Triton kernels TRL compiles at the first CUDA step
missing=$(for tool in make gcc; do command -v "$tool" >/dev/null || echo "$tool"; done)
if [ -n "$missing" ]; then
  sudo=$([ "$(id -u)" = 0 ] || echo sudo)
  $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
fi
python3 tools/fetch_uv.py .uv/bin
export UV_PYTHON_INSTALL_DIR="$PWD/.uv/python"
if ! python=$(.uv/bin/uv python find --no-python-downloads "$want" 2>/dev/null); then
  .uv/bin/uv python install "$want"
  python=$(.uv/bin/uv python find --no-python-downloads "$want")
fi
image=$(python3 -c 'import platform; print(platform.python_version())')
echo "Python $want for $lock: $python (the image's python3 is $image)"
# uv's venv: a system Python of that version may lack the venv module (Ubuntu's python3.X-venv); --seed gives pip
[ -x .venv/bin/python ] || .uv/bin/uv venv -q --seed --python "$python" .venv
make install LOCK="$lock" PYTHON="$python"
