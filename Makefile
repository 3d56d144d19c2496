# Two commands, each the whole set-up: `make demo` and `make test`.
# Both create/update .venv when pyproject.toml changed (a stamp makes the second run a no-op)
# and apt-get install the system packages that are missing.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.amh-installed
FIXTURES ?= build/fixtures
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# espeak-ng: demo corpus + G2P backend; ffmpeg: torchcodec; slurm-wlm + munge: the Slurm tests.
SYSTEM_PACKAGES := espeak-ng ffmpeg slurm-wlm munge
PYTEST_ARGS ?=
# Extra train.py overrides for the demo, e.g. DEMO_ARGS="train.max_steps=20".
DEMO_ARGS ?=

.PHONY: setup system demo test test-fast fixtures clean

setup: system $(STAMP)

system:
	@missing=""; for p in $(SYSTEM_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	fi

$(STAMP): pyproject.toml
	[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip wheel setuptools
	$(PIP) install -q -e ".[dev]"
	# DeepSpeed's setup.py imports torch, so it builds against the venv's torch (no isolation).
	$(PIP) install -q --no-build-isolation -e ".[deepspeed]"
	touch $(STAMP)

fixtures: setup
	$(PY) scripts/make_tiny_xtts.py --out $(FIXTURES)/tiny_xtts
	$(PY) scripts/make_demo_corpus.py --out $(FIXTURES)/demo_corpus

demo: fixtures
	$(PY) scripts/extend_vocab.py --base-vocab $(FIXTURES)/tiny_xtts/vocab.json \
	  --corpus $(FIXTURES)/demo_corpus/ready/metadata_train.csv $(FIXTURES)/demo_corpus/ready/metadata_eval.csv --mode chars \
	  --out $(FIXTURES)/demo_corpus/ready/vocab_extended_amharic.json
	# One CPU process; accelerate_config.yaml is the GPU-node launcher config (docs/cluster.md).
	$(VENV)/bin/accelerate launch --cpu --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no \
	  train.py --config configs/demo.yaml $(DEMO_ARGS)
	@echo "demo finished: run directory runs/demo (TensorBoard: $(VENV)/bin/tensorboard --logdir runs/demo/tensorboard), export runs/demo/export"

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: setup
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

clean:
	rm -rf build runs
