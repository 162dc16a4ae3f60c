#!/usr/bin/env bash
# The whole GPU check in ONE command of at most ~9.5 minutes, on a bare GPU machine:
#   1. install the carried wheels (datasets, optuna and what they need that is not there) into
#      $WORK/site, and record the machine: GPU, driver, CUDA, cuDNN, torch and package versions;
#   2. at the same time, each in its own processes on the one GPU:
#      - the CUDA tests: pytest -m cuda tests/test_cuda.py;
#      - the run: $CONFIG (default configs/full.toml: IMDB and AG News, rnn / attn_rnn / transformer +
#        tfidf, its seeds) with --jobs $JOBS (auto: 4 units per GPU) into $RUN_NAME, then more paired
#        seeds (EXTRA_SEEDS) into the same folder while time is left;
#      - if TUNE_MODELS is set, the tuned run: the same config with --tune (Optuna, SEARCH's space and
#        pruner, TUNE_TIMEOUT seconds a study, at most TUNE_TRIALS trials) for TUNE_MODELS, then the
#        seeds of the best configuration, into ${RUN_NAME}-tuned: tuned - untuned paired on one device;
#      Folders carried in .gpu/resume (scripts/gpu_prepare.sh RESUME=...) are copied into $WORK first, so a
#      run or tuned run of the same name resumes them; MAIN_RUN=0 skips the run (the tuned run alone);
#   3. python -m bench.speed --device cuda (harness against the plain loop) with the time left;
#   4. everything packed into $OUT (the reports are rebuilt where the folders are committed).
# Each stage runs under `timeout -s INT` (Ctrl-C for bench: finished units are saved; the stage is
# recorded with exit 124), cut to the time left, so something always comes back. Units resume: running the script again on the
# same warm machine (same $WORK) continues the run instead of starting it over.
#
# Before the call, HERE: `bash scripts/gpu_prepare.sh` (wheels -> .gpu/wheels, data -> .gpu/data,
# size check). The device call: carry [".gpu"], timeout_s 600, command `bash scripts/gpu_check.sh`.
#
# What comes back ($OUT may return at most 8 files, 2 folders deep, 16 MiB each, so each run folder
# travels packed; the runs themselves live in $WORK):
#   gpu_check.log                  the whole console transcript
#   summary.txt                    machine, versions, per-stage exit codes and seconds, per-model means
#   speed.csv                      bench.speed's CSV (tokens/s, harness/plain ratios, memory, GFLOP/s)
#   $RUN_NAME.tar.gz               the run folder (runs.csv, epochs.csv, units/, predictions/, ...)
#   $TUNED_NAME.tar.gz             the tuned run folder (also optuna.db, trials.csv, tuning.json), if any
#   logs.tar.gz                    per-stage logs, pytest junit XML, nvidia-smi samples every 5 s
# Unpack with: tar -C results -xzf $RUN_NAME.tar.gz (a folder over 16 MiB packed would not come back:
# IMDB's full budget with 6 seeds is ~2 MiB packed)
#
# Environment (defaults are the GPU run; scripts/gpu_dryrun.sh sets them for a CPU dry run):
#   DEVICE=cuda  CONFIG=configs/full.toml  EPOCHS= (the config's)  DATASETS=ag_news,imdb
#   SEEDS= (the config's)  EXTRA_SEEDS=5,6,7,8,9 (none: skip)  JOBS=auto  THREADS=2 (CPU threads a unit)
#   MAIN_RUN=1  MODELS= (the config's list; a comma list or all)  RUN_NAME=full-cuda  TUNE_MODELS= (none: no tuned run)  SEARCH=configs/search-full.toml
#   TUNE_TIMEOUT=210  TUNE_TRIALS=40  TUNE_JOBS=$JOBS  TUNE_CONFIG=$CONFIG  TUNED_NAME=$RUN_NAME-tuned
#   TUNE_SKIP=0 (1: no new trials; the tuned run's seed stage alone, from the best trials in its optuna.db,
#               e.g. a study resumed from .gpu/resume whose seeds never ran: bench.run --skip-tune)
#   RERANK=0 (K: after the trials, retrain the K best with RERANK_SEEDS=2 more seeds, bench.run --rerank)
#   TUNE_ONLY=0 (1: the trials and re-ranking alone, as TUNE_JOBS (a number) bench.tune workers, no seed stage:
#               scripts/gpu_tune_workers.sh; the seed stage then runs elsewhere from the optuna.db that comes back)
#   DATA_DIR=.gpu/data  WHEEL_DIR=.gpu/wheels  WORK=/tmp/gpu_check  OUT=$OUT (else $WORK/out)
#   BUDGET_S=560 (the whole script; call with timeout_s 600)  TEST_TIMEOUT=120  SPEED_TIMEOUT=120  RESERVE_S=45 (summary + packing)
#   SPEED_CONFIG=$CONFIG  SPEED_ARGS="--batches 100"  PYTHON=python3  RUN_TESTS=1
set -uo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"
T0=$(date +%s)

DEVICE="${DEVICE:-cuda}"
CONFIG="${CONFIG:-configs/full.toml}"
EPOCHS="${EPOCHS:-}"
DATASETS="${DATASETS:-ag_news,imdb}"
SEEDS="${SEEDS:-}"
EXTRA_SEEDS="${EXTRA_SEEDS:-5,6,7,8,9}"
JOBS="${JOBS:-auto}"
THREADS="${THREADS:-2}"
RUN_NAME="${RUN_NAME:-full-cuda}"
MODELS="${MODELS:-}"
MAIN_RUN="${MAIN_RUN:-1}"
TUNE_MODELS="${TUNE_MODELS:-}"
SEARCH="${SEARCH:-configs/search-full.toml}"
TUNE_TIMEOUT="${TUNE_TIMEOUT:-210}"
TUNE_TRIALS="${TUNE_TRIALS:-40}"
TUNE_JOBS="${TUNE_JOBS:-$JOBS}"
TUNE_CONFIG="${TUNE_CONFIG:-$CONFIG}"
TUNED_NAME="${TUNED_NAME:-$RUN_NAME-tuned}"
TUNE_SKIP="${TUNE_SKIP:-0}"
RERANK="${RERANK:-0}"
RERANK_SEEDS="${RERANK_SEEDS:-2}"
TUNE_ONLY="${TUNE_ONLY:-0}"
DATA_DIR="${DATA_DIR:-.gpu/data}"
WHEEL_DIR="${WHEEL_DIR:-.gpu/wheels}"
WORK="${WORK:-/tmp/gpu_check}"
OUT="${OUT:-$WORK/out}"
BUDGET_S="${BUDGET_S:-560}"
TEST_TIMEOUT="${TEST_TIMEOUT:-120}"
SPEED_TIMEOUT="${SPEED_TIMEOUT:-120}"
RESERVE_S="${RESERVE_S:-45}"
SPEED_CONFIG="${SPEED_CONFIG:-$CONFIG}"
SPEED_ARGS="${SPEED_ARGS:---batches 100}"
PY="${PYTHON:-python3}"
RUN_TESTS="${RUN_TESTS:-1}"

mkdir -p "$OUT" "$WORK/logs" && OUT="$(cd "$OUT" && pwd)" && WORK="$(cd "$WORK" && pwd)"
DATA_DIR="$(cd "$DATA_DIR" 2>/dev/null && pwd || echo "$DATA_DIR")"
RUN="$WORK/$RUN_NAME"
TUNED="$WORK/$TUNED_NAME"
STAGES="$WORK/stages.tsv"
: > "$STAGES"
exec > >(tee -a "$OUT/gpu_check.log") 2>&1
TEE_PID=$!

export PYTHONUNBUFFERED=1 MPLBACKEND=Agg HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export BENCH_CACHE_DIR="$WORK/cache" HF_HOME="$WORK/hf"
export PYTHONPATH="$REPO:$WORK/site${PYTHONPATH:+:$PYTHONPATH}"

say() { echo "== [$(( $(date +%s) - T0 ))s] $*"; }
left() { echo $(( BUDGET_S - ($(date +%s) - T0) )); }

pack() {  # everything that should come back, one file per folder under $OUT (written then renamed;
          # stages running at once pack at once, so each packing has its own temporary names)
    local tmp="$OUT/.pack.$BASHPID.tmp" folder
    tar -C "$WORK" -czf "$tmp" logs stages.tsv 2>/dev/null && mv "$tmp" "$OUT/logs.tar.gz"
    for folder in "$RUN" "$TUNED"; do
        [ -d "$folder" ] || continue
        tar -C "$WORK" -czf "$tmp" --exclude='*.bench.lock*' "$(basename "$folder")" \
            && mv "$tmp" "$OUT/$(basename "$folder").tar.gz"
    done
    rm -f "$tmp"
}

stage() {  # stage NAME CAP_SECONDS COMMAND...: run under a timeout cut to the time left, log, record, pack
    local name=$1 cap=$2; shift 2
    local avail=$(( $(left) - RESERVE_S )) t rc start
    t=$(( cap < avail ? cap : avail ))
    if [ "$t" -lt 20 ]; then
        say "$name: skipped, ${avail}s left before the reserve"
        printf '%s\tskipped\t0\n' "$name" >> "$STAGES"
        return 1
    fi
    say "$name (timeout ${t}s): $*"
    start=$(date +%s)
    if [ "${STAGE_QUIET:-0}" = 1 ]; then  # a stage running beside another: its output to its log only
        timeout -s INT -k 20 "$t" "$@" > "$WORK/logs/$name.log" 2>&1
        rc=$?
    else
        timeout -s INT -k 20 "$t" "$@" 2>&1 | tee "$WORK/logs/$name.log"
        rc=${PIPESTATUS[0]}
    fi
    printf '%s\t%s\t%s\n' "$name" "$rc" "$(( $(date +%s) - start ))" >> "$STAGES"
    say "$name: exit $rc after $(( $(date +%s) - start ))s$([ "$rc" = 124 ] && echo ' (timed out; finished units are kept)')"
    pack
    return "$rc"
}

say "gpu_check: device=$DEVICE config=$CONFIG datasets=$DATASETS seeds=${SEEDS:-config} extra=$EXTRA_SEEDS" \
    "jobs=$JOBS epochs=${EPOCHS:-config} budget=${BUDGET_S}s out=$OUT work=$WORK"

# ---------------------------------------------------------------- 1. wheels and the machine
SMI_PID=""
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi | tee "$WORK/logs/nvidia-smi.txt"
    nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used,memory.total,power.draw,clocks.sm \
        --format=csv -l 5 > "$WORK/logs/nvidia-smi-samples.csv" 2>/dev/null &
    SMI_PID=$!
fi
if ls "$WHEEL_DIR"/*.whl >/dev/null 2>&1; then
    say "installing $(ls "$WHEEL_DIR"/*.whl | wc -l) wheels from $WHEEL_DIR into $WORK/site"
    "$PY" -m pip install -q --disable-pip-version-check --root-user-action=ignore --no-index --no-deps --no-compile --no-cache-dir \
        --upgrade --target "$WORK/site" "$WHEEL_DIR"/*.whl 2>&1 | tail -5
    [ "${PIPESTATUS[0]}" = 0 ] || say "WARNING: the wheel install failed (see above)"
else
    say "no wheels in $WHEEL_DIR: using what is installed (run scripts/gpu_prepare.sh here and carry .gpu)"
fi
"$PY" - "$DEVICE" <<'PY' 2>&1 | tee "$WORK/logs/environment.txt"
import importlib.metadata as md
import platform
import sys

print("python", platform.python_version(), sys.executable, "|", platform.platform())
for name in ("torch", "numpy", "pandas", "pyarrow", "datasets", "optuna", "fsspec", "huggingface-hub", "tokenizers",
             "scikit-learn", "scipy", "statsmodels", "joblib", "sqlalchemy", "dill", "multiprocess"):
    try:
        print(f"  {name} {md.version(name)}")
    except md.PackageNotFoundError:
        print(f"  {name} MISSING")
try:  # what datasets and optuna need that is not met (pip --no-deps checks nothing)
    from packaging.requirements import Requirement
    from packaging.version import Version

    for top in ("datasets", "optuna", "alembic", "multiprocess"):
        for line in md.requires(top) or []:
            req = Requirement(line)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            try:
                have = md.version(req.name)
            except md.PackageNotFoundError:
                print(f"  UNMET {top}: {req} (missing)")
                continue
            if req.specifier and Version(have) not in req.specifier:
                print(f"  UNMET {top}: {req} (have {have})")
except Exception as exc:  # a report only
    print("  requirement check skipped:", type(exc).__name__, exc)
import torch

print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version(),
      "cuda available", torch.cuda.is_available())
if torch.cuda.is_available():
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        print(f"  gpu{i} {p.name}, {p.total_memory / 2**30:.1f} GiB, {p.multi_processor_count} SMs, "
              f"capability {p.major}.{p.minor}, bf16 {torch.cuda.is_bf16_supported()}")
elif sys.argv[1] == "cuda":
    print("WARNING: --device cuda requested but CUDA is not available")
import datasets, optuna  # noqa: E401  the carried packages import
print("imports ok: datasets", datasets.__version__, "optuna", optuna.__version__)
PY
if [ ! -f "$DATA_DIR/imdb/train.parquet" ] && [[ "$DATASETS" == *imdb* ]]; then
    say "ERROR: no $DATA_DIR/imdb/train.parquet: run scripts/gpu_prepare.sh here and carry .gpu"
fi
for folder in .gpu/resume/*/; do  # results folders carried to be resumed (never over a run already here)
    [ -d "$folder" ] || continue
    name="$(basename "$folder")"
    if [ -e "$WORK/$name" ]; then say "resume: $WORK/$name is already here; .gpu/resume/$name not copied"
    else cp -a "$folder" "$WORK/$name" && say "resume: .gpu/resume/$name -> $WORK/$name"; fi
done
printf '%s\t%s\t%s\n' setup 0 "$(( $(date +%s) - T0 ))" >> "$STAGES"

# ---------------------------------------------------------------- 2. tests, the run and the tuned run, at once
PIDS=()
if [ "$RUN_TESTS" = 1 ]; then
    STAGE_QUIET=1 stage cuda-tests "$TEST_TIMEOUT" "$PY" -m pytest -p no:cacheprovider -m cuda tests/test_cuda.py \
        -rs --junitxml="$WORK/logs/pytest-cuda.xml" &
    PIDS+=($!)
fi
COMMON_ARGS=(--dataset "$DATASETS" --device "$DEVICE" --threads "$THREADS" --data-dir "$DATA_DIR" --report none)
[ -n "$EPOCHS" ] && COMMON_ARGS+=(--epochs "$EPOCHS")
RUN_ARGS=(--config "$CONFIG" "${COMMON_ARGS[@]}")
TUNE_ARGS=(--tune --tune-timeout "$TUNE_TIMEOUT" --trials "$TUNE_TRIALS")
[ "$RERANK" != 0 ] && TUNE_ARGS+=(--rerank "$RERANK" --rerank-seeds "$RERANK_SEEDS")
[ "$TUNE_SKIP" = 1 ] && TUNE_ARGS=(--skip-tune)
BASE_SEEDS=(); [ -n "$SEEDS" ] && BASE_SEEDS=(--seeds "$SEEDS")
MODEL_ARGS=(); [ -n "$MODELS" ] && MODEL_ARGS=(--models "$MODELS")  # default: the config's list (`all` would
                                                                     # also run every other [model.*] table in it)
MAIN_ARGS=("${RUN_ARGS[@]}" --out "$RUN" "${MODEL_ARGS[@]}" --jobs "$JOBS")  # the run and its extra seeds
if [ -n "$TUNE_MODELS" ] && [ "$TUNE_ONLY" = 1 ]; then
    (export PY TUNE_CONFIG SEARCH DATASETS TUNE_MODELS TUNED DEVICE THREADS DATA_DIR TUNE_TIMEOUT TUNE_TRIALS TUNE_JOBS \
         RERANK RERANK_SEEDS LOGS="$WORK/logs"
     [ "$MAIN_RUN" = 1 ] && sleep 20
     STAGE_QUIET=1 stage tuned "$BUDGET_S" bash scripts/gpu_tune_workers.sh) &
    PIDS+=($!)
elif [ -n "$TUNE_MODELS" ]; then
    ([ "$MAIN_RUN" = 1 ] && sleep 20  # let the run encode the data into the shared cache first
     STAGE_QUIET=1 stage tuned "$BUDGET_S" "$PY" -m bench.run --config "$TUNE_CONFIG" "${COMMON_ARGS[@]}" \
        "${BASE_SEEDS[@]}" --out "$TUNED" "${TUNE_ARGS[@]}" --models "$TUNE_MODELS" --search "$SEARCH" \
        --jobs "$TUNE_JOBS") &
    PIDS+=($!)
fi
if [ "$MAIN_RUN" != 1 ]; then
    say "run: skipped (MAIN_RUN=$MAIN_RUN)"
elif stage run "$BUDGET_S" "$PY" -m bench.run "${MAIN_ARGS[@]}" "${BASE_SEEDS[@]}"; then
    if [ -n "$EXTRA_SEEDS" ] && [ "$EXTRA_SEEDS" != none ]; then
        stage extra-seeds "$BUDGET_S" "$PY" -m bench.run "${MAIN_ARGS[@]}" --seeds "$EXTRA_SEEDS"
    fi
fi
say "waiting for the stages still running"
# only the stages' own PIDs: a bare `wait` (no stage beside the run: no tests, no tuned run) would also wait
# for the nvidia-smi sampler and the transcript's tee, which never end, until the device call's limit
[ "${#PIDS[@]}" -gt 0 ] && wait "${PIDS[@]}" 2>/dev/null

# ---------------------------------------------------------------- 3. speed, with the time left
stage speed "$SPEED_TIMEOUT" "$PY" -m bench.speed --dataset imdb --device "$DEVICE" --config "$SPEED_CONFIG" \
    --data-dir "$DATA_DIR" --out "$OUT/speed.csv" $SPEED_ARGS

# ---------------------------------------------------------------- 4. summary, packing
[ -n "$SMI_PID" ] && kill "$SMI_PID" 2>/dev/null
{
    echo "gpu_check summary ($(date -u +%Y-%m-%dT%H:%M:%SZ), $(( $(date +%s) - T0 ))s in all, budget ${BUDGET_S}s)"
    echo "commit (from gpu_prepare.sh): $(tr '\n' ' ' < .gpu/GIT_SHA 2>/dev/null || echo unknown)"
    echo "device=$DEVICE config=$CONFIG datasets=$DATASETS seeds=${SEEDS:-config} extra=$EXTRA_SEEDS jobs=$JOBS epochs=${EPOCHS:-config}" \
        "run=$RUN_NAME tune_models=${TUNE_MODELS:-none} tuned=$TUNED_NAME tune_config=$TUNE_CONFIG skip=$TUNE_SKIP" \
        "search=$SEARCH tune_timeout=$TUNE_TIMEOUT trials=$TUNE_TRIALS rerank=$RERANK rerank_seeds=$RERANK_SEEDS"
    echo; echo "stage	exit	seconds  (124 = timed out, units finished before it are kept)"; cat "$STAGES"
    echo; cat "$WORK/logs/environment.txt" 2>/dev/null
    echo; grep -h "passed\|failed\|skipped\|error" "$WORK/logs/cuda-tests.log" 2>/dev/null | tail -3
    if [ "$TUNE_ONLY" = 1 ] && [ -f "$TUNED/trials.csv" ]; then
        echo; echo "$(basename "$TUNED") (trials only):"; "$PY" - "$TUNED" <<'PY'
import json
import sys
from pathlib import Path

import pandas as pd

run = Path(sys.argv[1])
trials = pd.read_csv(run / "trials.csv")
print(trials.groupby("state").agg(n=("number", "size"), median_s=("duration_s", "median"),
                                  epochs=("epochs_run", "sum")).to_string())
print(trials.sort_values("value", ascending=False)[["number", "state", "value", "epochs_run", "duration_s",
                                                    "params_count"]].head(8).to_string(index=False))
for key, s in json.loads((run / "tuning.json").read_text()).items():
    print(key, "best", json.dumps(s.get("best")), "rerank", json.dumps(s.get("rerank")))
PY
    fi
    for folder in "$RUN" "$TUNED"; do
        [ -f "$folder/runs.csv" ] || continue
        echo; echo "$(basename "$folder"):"; "$PY" - "$folder" <<'PY'
import json
import sys
from pathlib import Path

import pandas as pd

run = Path(sys.argv[1])
runs = pd.read_csv(run / "runs.csv")
ok = runs[runs["status"] == "ok"]
print(f"units: {len(runs)} ({len(ok)} ok); seeds with every model, per dataset:",
      {ds: int((g.groupby("seed")["model"].nunique() == runs["model"].nunique()).sum()) for ds, g in ok.groupby("dataset")})
table = ok.groupby(["dataset", "model"]).agg(n=("seed", "size"), test_acc=("test_acc", "mean"),
                                              train_tok_s=("train_tokens_per_s", "mean"),
                                              unit_wall_s=("wall_seconds", "mean"), epochs=("epochs_run", "mean"))
print(table.round(4).to_string())
env = json.loads((run / "environment.json").read_text())
print("environment.json:", {k: env.get(k) for k in ("gpu", "cuda", "cudnn", "torch", "wall_seconds", "units_run", "jobs")})
if (run / "trials.csv").is_file():
    trials = pd.read_csv(run / "trials.csv")
    print("trials:", trials.groupby(["model", "state"]).size().to_dict() if "state" in trials else len(trials))
PY
    done
    if [ -f "$OUT/speed.csv" ]; then
        echo; "$PY" - "$OUT/speed.csv" <<'PY'
import sys

import pandas as pd

s = pd.read_csv(sys.argv[1])
keep = s["metric"].str.contains("tokens_per_s|ratio|memory|gflops", regex=True)
print(s.loc[keep, ["model", "metric", "median", "unit"]].to_string(index=False))
PY
    fi
} > "$WORK/summary.txt" 2>&1
cp "$WORK/summary.txt" "$OUT/summary.txt"
pack
say "done; \$OUT holds:"; ls -la "$OUT"
for f in "$OUT"/*; do
    [ "$(stat -c %s "$f")" -le $(( 16 * 1024 * 1024 )) ] || say "WARNING: $f is over 16 MiB and will not come back"
done
cat "$OUT/summary.txt"
exec >&- 2>&-; wait "$TEE_PID" 2>/dev/null  # let the transcript reach $OUT before the call returns
