#!/usr/bin/env bash
# The CPU dry run of scripts/gpu_check.sh: the same script, end to end, on this machine, so that the
# only unknown left for the GPU call is the GPU. About 2-3 minutes on 2 CPU cores.
#   - data: 600 random rows of each split of ../shared/data/{imdb,ag_news} (scripts/gpu_prepare.sh, ROWS=600)
#   - wheels: the same pinned set, fetched for THIS Python (py3.11 here), installed with pip --target
#     and put first on PYTHONPATH exactly as on the GPU machine (the local packages are not touched)
#   - config: scripts/gpu_dryrun.toml (full.toml's shape, tiny sizes), 1 epoch, seeds 0,1 + extra seed 2
#   - the CUDA tests are collected and skip (no CUDA here); bench.speed runs on the CPU, briefly.
# Output: $DRY/out, laid out as the GPU call's $OUT (default DRY=/tmp/gpu_dryrun).
set -euo pipefail
cd "$(dirname "$0")/.."
DRY="${DRY:-/tmp/gpu_dryrun}"
rm -rf "$DRY" && mkdir -p "$DRY"
PYVER="$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
PYVER="$PYVER" WHEEL_DIR="$DRY/wheels" bash scripts/gpu_wheels.sh
SRC=../shared/data DEST="$DRY/data" ROWS="${ROWS:-600}" ZSTD_LEVEL=3 SKIP_WHEELS=1 bash scripts/gpu_prepare.sh
DEVICE=cpu CONFIG=scripts/gpu_dryrun.toml EPOCHS=1 SEEDS=0,1 EXTRA_SEEDS=2 JOBS=2 \
    DATA_DIR="$DRY/data" WHEEL_DIR="$DRY/wheels" OUT="$DRY/out" WORK="$DRY/work" BUDGET_S="${BUDGET_S:-300}" \
    TEST_TIMEOUT=120 SPEED_TIMEOUT=90 \
    SPEED_ARGS="--batches 4 --repeats 1 --matmul-size 256 --max-length 0 --jobs-dataset none" \
    bash scripts/gpu_check.sh
