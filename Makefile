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
# espeak-ng: demo corpus + G2P backend; ffmpeg: torchcodec. Only for `make test`: slurm-wlm + munge (the
# Slurm tests), chromium + an Ethiopic font (the headless-browser check of TensorBoard, scripts/check_tensorboard.py).
SYSTEM_PACKAGES := espeak-ng ffmpeg
TEST_PACKAGES := slurm-wlm munge chromium fonts-sil-abyssinica
PYTEST_ARGS ?=
# Extra train.py overrides for the demo, e.g. DEMO_ARGS="train.max_steps=20".
DEMO_ARGS ?=
# Threads for the demo's one CPU process: the physical cores, which is what `accelerate launch` picks
# (with a notice) when the flag is missing. Expanded when the demo runs, after the venv exists.
DEMO_THREADS ?= $(shell $(PY) -c "import psutil; print(psutil.cpu_count(logical=False) or 1)")

.PHONY: setup system system-test demo test test-fast fixtures clean

setup: system $(STAMP)

# $(call apt_install,PACKAGES): apt-get install those of PACKAGES that are missing.
define apt_install
	@missing=""; for p in $(1); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	fi
endef

system:
	$(call apt_install,$(SYSTEM_PACKAGES))

system-test:
	$(call apt_install,$(TEST_PACKAGES))

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
	$(PY) scripts/make_tiny_mms.py --out $(FIXTURES)/tiny_mms

demo: fixtures
	$(PY) scripts/extend_vocab.py --base-vocab $(FIXTURES)/tiny_xtts/vocab.json \
	  --corpus $(FIXTURES)/demo_corpus/ready/metadata_train.csv $(FIXTURES)/demo_corpus/ready/metadata_eval.csv --mode chars \
	  --out $(FIXTURES)/demo_corpus/ready/vocab_extended_amharic.json
	# One CPU process; accelerate_config.yaml is the GPU-node launcher config (docs/cluster.md). --quiet: a
	# user error is train.py's one line, not also accelerate's CalledProcessError traceback.
	$(VENV)/bin/accelerate launch --quiet --cpu --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no \
	  --num_cpu_threads_per_process $(DEMO_THREADS) train.py --config configs/demo.yaml $(DEMO_ARGS)
	@out=$$($(PY) -c 'import sys; from amh.config import load_config; print(load_config("configs/demo.yaml", sys.argv[1:]).output_dir)' $(DEMO_ARGS)); \
	  echo "demo finished: run directory $$out (TensorBoard: $(VENV)/bin/tensorboard --logdir $$out/tensorboard), export $$out/export"

test: setup system-test
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: setup system-test
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

clean:
	rm -rf build runs
