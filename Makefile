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

# Sinabs 3.1.3 pins nir<=1.0.4 (which cannot read nir 1.0.8's LIF nodes) and needs samna (a
# hardware SDK whose PyPI stub downloads at import): it goes, without its dependencies (the
# rest are neurokd's own), into a folder of its own that `--check-consumers` puts on the path
# of a subprocess.
SINABS_SITE  := .sinabs-site
SINABS_STAMP := $(SINABS_SITE)/.neurokd-installed

.PHONY: install lava consumers demo test test-fast lint bench bench-speed figures clean

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

consumers: $(SINABS_STAMP)

$(SINABS_STAMP): $(STAMP)
	rm -rf $(SINABS_SITE)
	$(BIN)/python -m pip install --quiet --no-deps --target $(SINABS_SITE) sinabs==3.1.3 pbr==7.1.3
	touch $(SINABS_STAMP)

# `make demo RUNS=/tmp/x` puts the demo run in /tmp/x/demo. A second `make demo` replaces the
# demo run it made before (said in one line) instead of stopping at the name clash.
RUNS ?= runs

demo: $(STAMP)
	@if [ -e "$(RUNS)/demo/student.pt" ] || [ -e "$(RUNS)/demo/config.toml" ]; then \
		echo "make demo: replacing the earlier demo run in $(RUNS)/demo"; fi
	$(BIN)/neurokd distill --name demo --out "$(RUNS)" --overwrite
	@echo "next: $(BIN)/neurokd energy report $(RUNS)/demo/student.pt   (or . $(BIN)/activate, then the README's commands)"

# Everything CI checks: the layering contracts, then every test (Lava ones included).
test: $(STAMP) $(LAVA_STAMP) $(SINABS_STAMP) lint
	$(BIN)/python -m pytest -q

# The tests without the `slow` mark (trainings, Lava, torchrun): under a minute, one worker per
# core (pytest-xdist; each worker builds the session's trained run and exports once).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" -n auto --dist worksteal

lint: $(STAMP)
	$(BIN)/python tools/lint_imports.py

# The README's demo figures (accuracies, SOPs, SNN/ANN energy, the same student in Lava) from a
# fresh demo distill, into benchmarks/results/figures.{md,json} with the threads and load they
# were made with (a minute or two); `python tools/gen_docs.py` then writes them into the docs.
# One thread: the figures then do not depend on how busy the machine is (docs/training.md).
figures: $(STAMP) $(LAVA_STAMP)
	$(BIN)/python benchmarks/figures.py --threads 1 --publish

bench: $(STAMP)
	$(BIN)/python benchmarks/compare_methods.py

bench-speed: $(STAMP) $(LAVA_STAMP)
	$(BIN)/python benchmarks/distill_speed.py
	$(BIN)/python benchmarks/onnx_latency.py
	$(BIN)/python benchmarks/throughput.py

clean:
	rm -rf $(VENV) $(LAVA_VENV) $(SINABS_SITE) build *.egg-info
