#!/usr/bin/env bash
# TUNE_ONLY=1 of scripts/gpu_check.sh: one study's trials (and its re-ranking) alone, as $TUNE_JOBS
# `python -m bench.tune` workers sharing $TUNED/optuna.db on the one device, with no seed stage, for a seed
# stage run elsewhere (on the CPU, beside the untuned configuration it is paired with:
# bench.run --skip-tune --search $SEARCH --out <the folder, with optuna.db copied back>).
# Each worker stops starting trials after $TUNE_TIMEOUT s (bench.tune --timeout), waits for the trials in
# flight, then trains its share of the re-ranking (--rerank $RERANK --rerank-seeds $RERANK_SEEDS).
# A Ctrl-C (gpu_check.sh's stage timeout sends SIGINT to this script's process group) is passed on to
# every worker: background jobs of a script ignore SIGINT unless job control is on, hence `set -m`
# (each worker in its own process group) and the trap that forwards it.
# Environment (gpu_check.sh exports them): PY TUNE_CONFIG SEARCH DATASETS TUNE_MODELS TUNED DEVICE THREADS
# DATA_DIR TUNE_TIMEOUT TUNE_TRIALS TUNE_JOBS RERANK RERANK_SEEDS LOGS
set -uo pipefail
set -m
pids=()
trap 'kill -INT "${pids[@]}" 2>/dev/null' INT TERM
rerank=()
[ "${RERANK:-0}" != 0 ] && rerank=(--rerank "$RERANK" --rerank-seeds "$RERANK_SEEDS" --workers "$TUNE_JOBS")
for ((k = 0; k < TUNE_JOBS; k++)); do
    "$PY" -m bench.tune --config "$TUNE_CONFIG" --search "$SEARCH" --dataset "$DATASETS" --model "$TUNE_MODELS" \
        --out "$TUNED" --device "$DEVICE" --threads "$THREADS" --data-dir "$DATA_DIR" --timeout "$TUNE_TIMEOUT" \
        --trials "$TUNE_TRIALS" --worker "$k" "${rerank[@]}" > "$LOGS/tune-worker$k.log" 2>&1 &
    pids+=($!)
done
rc=0
for p in "${pids[@]}"; do
    while true; do  # a trapped signal interrupts `wait` (status > 128): wait again for the worker to stop
        wait "$p"; s=$?
        kill -0 "$p" 2>/dev/null || break
    done
    [ "$s" != 0 ] && rc=$s
done
for ((k = 0; k < TUNE_JOBS; k++)); do echo "== worker $k"; tail -n 4 "$LOGS/tune-worker$k.log"; done
exit "$rc"
