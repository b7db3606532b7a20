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

.PHONY: install demo test train cv submit kernel bench push clean help

help:
	@echo "make demo | test | train MODEL=r3d18 FOLD=0 | cv MODEL=... | submit [RUNS=...] | kernel | bench"

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

test: $(STAMP)
	$(PY) -m pytest -q $(ARGS)

train: $(STAMP)
	$(PY) -m vidkit train configs/$(MODEL).yaml comp=$(COMP) fold=$(FOLD) $(ARGS)

cv: $(STAMP)
	$(PY) -m vidkit cv configs/$(MODEL).yaml comp=$(COMP) $(ARGS)

submit: $(STAMP)
	$(PY) -m vidkit submit comp=$(COMP) $(RUNS_ARG) $(ARGS)

kernel: $(STAMP)
	$(PY) -m vidkit kernel comp=$(COMP) $(RUNS_ARG) $(ARGS)

bench: $(STAMP)
	@ls benchmarks/*.py >/dev/null 2>&1 && for f in benchmarks/*.py; do $(PY) $$f || exit 1; done || echo "no benchmarks yet"

clean:
	rm -rf data/demo weights/demo submissions/*.csv submissions/*.json competition/demo.folds.csv
