# Two entry points on a fresh machine: `make run` (install + dvc repro) and `make test` (install + pytest).
# Installs are exact: every package at the version and hash in a committed lock (requirements/*.lock), so two
# machines, or one machine a week apart, run the same code. `make lock` refreshes the locks (see docs/install.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# requirements/cpu.lock (torch's CPU build, the default) or requirements/cuda.lock (same pins, CUDA torch):
# `make run LOCK=requirements/cuda.lock` on a GPU machine
LOCK ?= requirements/cpu.lock
# Every module's .pyc written at install (see install below). Empty (COMPILE_BYTECODE=) leaves them to the first
# import: only for throwaway venvs whose processes may write them (tests/test_cloud.py's rented machine).
COMPILE_BYTECODE ?= --compile-bytecode
# Where torch's +cpu wheel lives (PyPI has only the CUDA build): this machine's pip find-links if it has one,
# else PyTorch's own CPU wheel page.
TORCH_LINKS ?= $(firstword $(PIP_FIND_LINKS) $(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null) https://download.pytorch.org/whl/cpu/torch/)
# What `make lock` resolves for: this Python (major.minor) on 64-bit x86 Linux (glibc >= 2.28); the lock's
# header records it and tools/check_lock.py compares it with the machine before anything is installed
LOCK_PYTHON ?= $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')
LOCK_PLATFORM ?= x86_64-manylinux_2_28
UV := $(BIN)/uv
LOCK_FLAGS = -q --generate-hashes --python-version $(LOCK_PYTHON) --python-platform $(LOCK_PLATFORM) \
  --custom-compile-command "make lock (for Python $(LOCK_PYTHON) on $(LOCK_PLATFORM))"
STAMP := $(VENV)/.installed-$(notdir $(LOCK))

# Debian's chromium draws the offline `dvc plots` page in a test; sudo only when not root.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install browser run test test-fast bench lock clean sky

# One stamp per lock: switching LOCK (CPU <-> CUDA torch) re-syncs the venv instead of keeping the old torch.
$(STAMP): pyproject.toml $(LOCK) requirements/offline.lock requirements/uv.lock tools/check_lock.py
	@$(PYTHON) tools/check_lock.py $(LOCK)
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --require-hashes -r requirements/uv.lock
	# exactly the lock: sync also removes what the lock does not name (the offline packages take no dependencies).
	# --compile-bytecode: uv, unlike pip, leaves the .pyc files to the first import, and where Python may not write
	# them (PYTHONDONTWRITEBYTECODE, as on this project's machines) every process compiled torch, transformers and
	# peft again: ~11 s of each stage's start (BENCHMARKS.md "Test suite")
	UV_FIND_LINKS=$(TORCH_LINKS) $(UV) pip sync -q $(COMPILE_BYTECODE) --python $(BIN)/python --require-hashes $(LOCK) requirements/offline.lock requirements/uv.lock
	$(UV) pip install -q $(COMPILE_BYTECODE) --python $(BIN)/python --no-deps --no-build-isolation -e .
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

# Re-resolve every pin (needs the package index); commit the five locks together.
lock:
	$(eval UVC := $(if $(wildcard $(UV)),$(UV),uv))
	$(UVC) pip compile $(LOCK_FLAGS) pyproject.toml --extra test --extra ray -c requirements/cpu-constraints.txt \
	  --find-links $(TORCH_LINKS) -o requirements/cpu.lock
	$(UVC) pip compile $(LOCK_FLAGS) pyproject.toml --extra test --extra ray -c requirements/cuda-constraints.txt \
	  -o requirements/cuda.lock
	$(UVC) pip compile $(LOCK_FLAGS) requirements/offline.in --no-deps -o requirements/offline.lock
	$(UVC) pip compile $(LOCK_FLAGS) requirements/uv.in -o requirements/uv.lock
	$(UVC) pip compile $(LOCK_FLAGS) requirements/sky.in -o requirements/sky.lock

browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || { \
	  echo "installing Debian's chromium (headless check of the offline plots page)"; \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends chromium fonts-dejavu-core >/dev/null; }

run: install
	# params first: DVC removes a stage's outputs before running it, so bad params must stop before DVC does
	PATH="$(CURDIR)/$(BIN):$$PATH" qlora-sentiment check --quiet
	PATH="$(CURDIR)/$(BIN):$$PATH" dvc repro
	@PATH="$(CURDIR)/$(BIN):$$PATH" qlora-sentiment summary

test: install browser
	# lint first ([tool.ruff] in pyproject.toml): a second, and a finding stops before the tests start
	$(BIN)/ruff check .
	# two workers: most tests are single-threaded (one torch thread each), so two of them use both cores
	PATH="$(CURDIR)/$(BIN):$$PATH" pytest -n 2 --dist worksteal -v --durations=30

# The edit loop: lint, then the tests that train, serve and run no pipeline (`slow` unmarked), on two workers.
test-fast: install
	$(BIN)/ruff check .
	PATH="$(CURDIR)/$(BIN):$$PATH" pytest -n 2 --dist worksteal -q -m "not slow" --durations=10

# SkyPilot, the launcher of cloud/sky-train.yaml, in a venv of its own (it pins uvicorn < 0.36, the server here
# runs 0.54): a laptop needs only this one to rent a GPU. `make sky`, then `.venv-sky/bin/sky launch ...`.
SKY_VENV ?= .venv-sky
$(SKY_VENV)/.installed: requirements/sky.lock $(STAMP)
	@[ -x $(SKY_VENV)/bin/python ] || $(UV) venv -q --python $(PYTHON) $(SKY_VENV)
	$(UV) pip sync -q --python $(SKY_VENV)/bin/python --require-hashes requirements/sky.lock
	touch $@

sky: $(SKY_VENV)/.installed

# Speed and memory, project vs the notebook way, side by side (needs `make run` first); see BENCHMARKS.md.
bench: install
	PATH="$(CURDIR)/$(BIN):$$PATH" python bench/bench.py

clean:
	rm -rf $(VENV) $(SKY_VENV)
