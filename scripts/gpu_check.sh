#!/usr/bin/env bash
# One-call GPU check on one H100/H200, in under 9 minutes (scripts/gpu_check.py says what it measures):
#
#     bash scripts/gpu_check.sh [--out DIR]          # GPU: full-size XTTS v2 GPT; table in DIR/gpu_check.md
#     bash scripts/gpu_check.sh --dry-run [--out DIR] # CPU, tiny release, a few steps (tests/test_gpu_check.py)
#
# DIR defaults to $OUT (the device machine's result folder) or ./gpu_check_out.
#
# What it needs on a bare machine with this repo:
#   - python3 with torch 2.11 (the GPU images have torch, transformers and accelerate);
#   - the project's other dependencies (pyproject.toml: coqui-tts 0.28, datasets, soundfile, soxr, ...).
#     Without .venv this script creates one from pyproject.toml (`pip install -e .`, on top of the
#     system's torch via --system-site-packages). A machine without PyPI needs a wheelhouse:
#     WHEELS=/path/to/wheels (built elsewhere with `pip download -d wheels .`), installed with --no-index.
#   - build/fixtures/demo_corpus (the ratio and stability parts read it; it is rebuilt if missing,
#     which needs espeak-ng) - carry it along. The full-size random release is built on the spot (~1 min).
#   - FFmpeg's shared libraries for the Coqui recipe's loop (it decodes through torchaudio/torchcodec);
#     without them the ratio part fails and is reported, the others run.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
DRY=()
OUT_DIR=${OUT:-$REPO/gpu_check_out}
while (($#)); do
  case $1 in
    --dry-run) DRY=(--dry-run); shift ;;
    --out) OUT_DIR=$2; shift 2 ;;
    *) echo "gpu_check.sh: unknown argument $1 (use --dry-run, --out DIR)" >&2; exit 2 ;;
  esac
done
mkdir -p "$OUT_DIR"

PY=${PYTHON:-$REPO/.venv/bin/python}
if [[ ! -x $PY ]]; then
  echo "gpu_check: no $PY; creating .venv from pyproject.toml" >&2
  python3 -m venv --system-site-packages "$REPO/.venv"
  PY=$REPO/.venv/bin/python
  if [[ -n ${WHEELS:-} ]]; then
    "$PY" -m pip install -q --no-index --find-links "$WHEELS" -e "$REPO"
  else
    "$PY" -m pip install -q -e "$REPO"
  fi
fi

export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
# GPU: 530 s for everything (the Python side budgets 510 s across its parts), under 9 minutes with
# start-up. A dry run is bounded by its few tiny steps instead (~1 CPU-minute; far longer on a busy box).
LIMIT=${GPU_CHECK_TIMEOUT_S:-$( ((${#DRY[@]})) && echo 3600 || echo 530)}
timeout --kill-after=10 "$LIMIT" "$PY" "$REPO/scripts/gpu_check.py" --out "$OUT_DIR" "${DRY[@]}" \
  2>&1 | tee "$OUT_DIR/gpu_check.log"
