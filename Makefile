# vidkit: `make demo` and `make test` install everything they need into .venv on first use.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
MODEL ?= r3d18
COMP ?= competition/demo.yaml
FOLD ?= 0
ARGS ?=
RUNS ?=
RUNS_ARG := $(if $(strip $(RUNS)),runs="$(strip $(RUNS))",)
# `make submit` first re-searches the blend weights on OOF (ENSEMBLE=0 keeps ensemble.yaml as it is);
# ENSEMBLE_ARGS go to `vidkit ensemble`, e.g. "method=logit search=scipy"
ENSEMBLE ?= 1
ENSEMBLE_ARGS ?=

.PHONY: install demo test test-fast train cv report ensemble submit kernel bench push clean help

help:
	@echo "make demo | test | test-fast | train MODEL=r3d18 FOLD=0 | cv MODEL=... | report | ensemble | submit [RUNS=...] | kernel | push | bench"

# reinstall only when requirements.txt or pyproject.toml change
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip 2>&1 | { grep -v "is ignored: it is neither" || true; }
	$(PY) -m pip install -q -r requirements.txt 2>&1 | { grep -v "is ignored: it is neither" || true; }
	$(PY) -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | { grep -v "is ignored: it is neither" || true; }
	$(PY) -c "import torch, torchvision, transformers, timm, accelerate, albumentations, cv2, vidkit"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m vidkit demo $(ARGS)

# one pytest-xdist worker per core (worksteal evens out the long learning tests); both print the 15 slowest
# tests; test-fast leaves out the tests marked slow (learning tests, end-to-end runs in several processes).
# ARGS="-n0" runs in one process.
PYTEST := $(PY) -m pytest -q -n auto --dist worksteal --durations=15
test: $(STAMP)
	$(PYTEST) $(ARGS)

test-fast: $(STAMP)
	$(PYTEST) -m "not slow" $(ARGS)

train: $(STAMP)
	$(PY) -m vidkit train configs/$(MODEL).yaml comp=$(COMP) fold=$(FOLD) $(ARGS)

cv: $(STAMP)
	$(PY) -m vidkit cv configs/$(MODEL).yaml comp=$(COMP) $(ARGS)

report: $(STAMP)
	$(PY) -m vidkit report comp=$(COMP) $(RUNS_ARG)

ensemble: $(STAMP)
	$(PY) -m vidkit ensemble comp=$(COMP) $(RUNS_ARG) $(ENSEMBLE_ARGS)

submit: $(STAMP)
	$(if $(filter 1,$(ENSEMBLE)),$(PY) -m vidkit ensemble comp=$(COMP) $(RUNS_ARG) $(ENSEMBLE_ARGS))
	$(PY) -m vidkit submit comp=$(COMP) $(RUNS_ARG) $(ARGS)

kernel: $(STAMP)
	$(PY) -m vidkit kernel comp=$(COMP) $(RUNS_ARG) $(ARGS)

# rebuilds the kernel, then `kaggle datasets version|create -r zip` + `kaggle kernels push` (or prints them)
push: $(STAMP)
	$(PY) -m vidkit kernel comp=$(COMP) $(RUNS_ARG) push=true $(ARGS)

# ARGS=--smoke: every benchmark at its smallest size (what tests/test_benchmarks.py runs)
bench: $(STAMP)
	for f in benchmarks/bench_*.py; do echo "== $$f"; $(PY) $$f $(ARGS) || exit 1; done  # results: benchmarks/README.md

clean:
	rm -rf data/demo weights/demo submissions/*.csv submissions/*.json competition/demo.folds.csv
