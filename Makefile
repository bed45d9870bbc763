# Two entry points: `make demo` and `make test`; both create the virtual environment on first use.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.neurokd-installed
# The torch build pip finds on this machine's disk (x86_64) or a CPU build (aarch64).
TORCH_PINS := $(if $(filter aarch64,$(shell uname -m)),torch==2.9.1 torchvision==0.24.1,torch==2.14.1 torchvision==0.29.1)

# Lava (lava-nc 0.10 / lava-dl 0.6) needs Python 3.10, numpy<2 and torch 2.3: its own venv.
LAVA_VENV   := .venv-lava
LAVA_STAMP  := $(LAVA_VENV)/.neurokd-installed
LAVA_PYTHON ?= $(shell PYENV_VERSION=3.10.13 pyenv which python 2>/dev/null || command -v python3.10)

.PHONY: install lava demo test test-fast lint bench bench-speed clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_PINS)
	# setuptools prints an 'Editable installation' notice for any package-dir mapping (exporters/
	# and energy/ are neurokd.exporters / neurokd.energy): information, not a problem to act on.
	PYTHONWARNINGS="ignore:Editable installation" $(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

lava: $(LAVA_STAMP)

$(LAVA_STAMP):
	@test -n "$(LAVA_PYTHON)" || { echo "make lava: no Python 3.10 found (pyenv 3.10.13 or python3.10)"; exit 1; }
	test -x $(LAVA_VENV)/bin/python || $(LAVA_PYTHON) -m venv $(LAVA_VENV)
	$(LAVA_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LAVA_VENV)/bin/python -m pip install --quiet lava-dl==0.6.0
	touch $(LAVA_STAMP)

demo: $(STAMP)
	$(BIN)/neurokd distill --name demo

# Everything CI checks: the layering contracts, then every test (Lava ones included).
test: $(STAMP) $(LAVA_STAMP) lint
	$(BIN)/python -m pytest -q

# The tests without the `slow` mark (trainings, Lava, torchrun): under a minute.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/python tools/lint_imports.py

bench: $(STAMP)
	$(BIN)/python benchmarks/compare_methods.py

bench-speed: $(STAMP) $(LAVA_STAMP)
	$(BIN)/python benchmarks/distill_speed.py
	$(BIN)/python benchmarks/onnx_latency.py
	$(BIN)/python benchmarks/throughput.py

clean:
	rm -rf $(VENV) $(LAVA_VENV) build *.egg-info
