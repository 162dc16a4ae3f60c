#!/usr/bin/env bash
# Fetch, HERE (a machine that reaches PyPI), the wheels that scripts/gpu_check.sh installs on the GPU
# machine, which has PyTorch, pyarrow, pandas, scikit-learn, huggingface-hub, tokenizers, ... but
# not `datasets` and `optuna` (see the device docs' package list), and cannot reach any registry.
#
#   bash scripts/gpu_wheels.sh                 # -> .gpu/wheels, for the GPU machine's CPython 3.12
#   PYVER=3.11 WHEEL_DIR=/tmp/w311 bash scripts/gpu_wheels.sh   # for a CPU dry run here
#
# Only what is missing there travels, pinned to the versions this project is tested with here
# (one version of each: two would stop the install). fsspec is there too, but datasets caps it
# (fsspec<=2026.9.0), so the tested one travels. Needs on the GPU machine that are NOT carried:
# pyarrow>=24 (datasets), huggingface-hub>=1.31 (there: 1.33), numpy, pandas, tqdm, xxhash,
# pyyaml, packaging, filelock, typing-extensions, markupsafe; gpu_check.sh prints any unmet one.
# The wheels are never committed: .gpu/ is listed in .git/info/exclude by scripts/gpu_prepare.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEEL_DIR="${WHEEL_DIR:-.gpu/wheels}"
PYVER="${PYVER:-3.12}"
WHEELS=(
    datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 fsspec==2026.9.0          # datasets
    optuna==5.0.0 alembic==1.20.1 Mako==1.4.3 SQLAlchemy==2.1.9 colorlog==6.12.0  # optuna
)
abi="cp${PYVER/./}"
rm -rf "$WHEEL_DIR" && mkdir -p "$WHEEL_DIR"
python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version "$PYVER" --implementation cp --abi "$abi" --abi abi3 --abi none \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any \
    -d "$WHEEL_DIR" "${WHEELS[@]}" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
n=$(ls "$WHEEL_DIR"/*.whl | wc -l)
if [ "$n" -ne "${#WHEELS[@]}" ]; then
    echo "gpu_wheels: expected ${#WHEELS[@]} wheels, got $n in $WHEEL_DIR" >&2; exit 1
fi
echo "gpu_wheels: $n wheels for CPython $PYVER in $WHEEL_DIR ($(du -sh "$WHEEL_DIR" | cut -f1))"
