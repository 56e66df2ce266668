# `make demo`: set up and run the default recipe (UniGRPO on the built-in tiny arithmetic model).
# `make test`: set up and run the test suite.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q -c .ci/constraints.txt
EXTRAS ?= dev,image

.PHONY: setup demo test sft-demo bench

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml .ci/constraints.txt Makefile
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PIP) torch==2.14.1 torchvision==0.29.1
	$(PIP) -e ".[$(EXTRAS)]"
	touch $@

demo: setup
	HF_HUB_OFFLINE=1 $(VENV)/bin/unigrpo train --config recipes/tiny-arith.yaml

sft-demo: setup
	HF_HUB_OFFLINE=1 $(VENV)/bin/unigrpo sft --config recipes/tiny-arith-sft.yaml

test: setup
	HF_HUB_OFFLINE=1 $(VENV)/bin/pytest -q tests
