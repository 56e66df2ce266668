# `make demo`: set up and run the default recipe (UniGRPO on the built-in tiny arithmetic model).
# `make test`: set up and run the test suite; it first builds the ImageReward reward's environment (below).
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q -c .ci/constraints.txt
EXTRAS ?= dev,image,ray

.PHONY: setup reward-envs demo test sft-demo t2i-demo countdown-demo mmu-demo bench

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml .ci/constraints.txt Makefile
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PIP) torch==2.14.1 torchvision==0.29.1
	$(PIP) -e ".[$(EXTRAS)]"
	touch $@

# The ImageReward reward's own environment (image-reward pins transformers<=4.55.4; see rewards/environments.py), in
# ~/.cache/unigrpo/envs/image-reward (or $UNIGRPO_ENVS_DIR): ~0.7 GB, the trainer's torch shared by links, not copied;
# one line per stage, pip's output in setup.log there. UNIGRPO_TORCH_INDEX_URL=<index> gives it its own torch instead.
reward-envs: setup
	$(VENV)/bin/unigrpo rewards setup image-reward

demo: setup
	HF_HUB_OFFLINE=1 $(VENV)/bin/unigrpo train --config recipes/tiny-arith.yaml

sft-demo: setup
	HF_HUB_OFFLINE=1 $(VENV)/bin/unigrpo sft --config recipes/tiny-arith-sft.yaml

t2i-demo: setup
	HF_HUB_OFFLINE=1 $(VENV)/bin/unigrpo train --config recipes/tiny-t2i.yaml

countdown-demo: setup
	HF_HUB_OFFLINE=1 $(VENV)/bin/unigrpo train --config recipes/tiny-countdown.yaml

mmu-demo: setup
	HF_HUB_OFFLINE=1 $(VENV)/bin/unigrpo train --config recipes/tiny-mmu.yaml

test: setup reward-envs
	HF_HUB_OFFLINE=1 $(VENV)/bin/pytest -q tests
