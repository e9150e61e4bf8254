#!/usr/bin/env bash
# Install time of the CPU lock, pip vs uv, side by side on this machine, both with empty caches (a fresh
# machine): each into its own new venv, the same lock and hashes. Prints seconds and the ratio.
#   bash bench/install_time.sh            (figures: docs/install.md)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
LINKS=$(make -s -f Makefile --eval 'print-links: ; @echo $(TORCH_LINKS)' print-links)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
locks=(requirements/cpu.lock requirements/offline.lock requirements/uv.lock)

$PYTHON -m venv "$work/pip"
start=$(date +%s%N)
"$work/pip/bin/python" -m pip install -q --no-cache-dir --require-hashes --no-deps --find-links "$LINKS" \
  $(printf -- '-r %s ' "${locks[@]}") 2> >(grep -v "is ignored: it is neither" >&2)
pip_s=$(( ($(date +%s%N) - start) / 1000000 ))

$PYTHON -m venv "$work/uv"
"$work/uv/bin/python" -m pip install -q --no-cache-dir --require-hashes -r requirements/uv.lock
start=$(date +%s%N)
UV_CACHE_DIR="$work/uv-cache" UV_FIND_LINKS="$LINKS" "$work/uv/bin/uv" pip sync -q \
  --python "$work/uv/bin/python" --require-hashes "${locks[@]}"
uv_s=$(( ($(date +%s%N) - start) / 1000000 ))

$PYTHON -c "import sys; p, u = int(sys.argv[1]) / 1e3, int(sys.argv[2]) / 1e3
print(f'pip install (no cache): {p:.1f} s\nuv pip sync (no cache):  {u:.1f} s\nuv / pip speed-up:       {p / u:.1f}x')" "$pip_s" "$uv_s"
