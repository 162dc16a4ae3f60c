"""Re-rank a finished study's best trials over more seeds, so the seed stage gets the configuration
that is best on average rather than the one whose single trial seed was luckiest.

Every trial trains with one seed (`TRIAL_SEED`, or one of its own with settings.trial_seed =
"per_trial") and is scored on one validation split, so the best of many trials is partly the best of
that seed's luck (the winner's curse: on the committed studies the seed stage's validation mean lay
1.2-2.3 pp under the best trial's value). Here the `top`
completed trials are trained again, unchanged, with `seeds` extra seeds (numbered from
`RERANK_SEED0`, apart from the seed stage's 0, 1, 2, ...), on the same training rows and
epochs as the trials, and scored on the same validation split; the test split is not read.
The chosen configuration is the candidate with the best mean over its trial value and those
seeds (`chosen_trial`).

Each (trial, seed) result is stored in the study itself (a study user attribute), so a stopped
re-ranking resumes where it left off, and any number of workers can share one (`--worker K` of
`--workers N` takes every N-th item). Until every candidate has all its seeds the study's plain
best trial stands. Trials added later can change the top: re-rank again to fill the new ones in.
"""
from __future__ import annotations

import logging
import math
from typing import Any

from bench.config import BenchError, Config
from bench.search_space import apply_params

log = logging.getLogger("bench.rerank")

RERANK_SEED0 = 1000  # first extra seed: far from the seed stage's 0, 1, 2, ... so its seeds stay unselected-on


def rerank_seeds(count: int) -> list[int]:
    return [RERANK_SEED0 + i for i in range(count)]


def check_options(top: int, seeds: int, worker: int = 0, workers: int = 1) -> None:
    """The re-ranking options as both CLIs take them (`--rerank`, `--rerank-seeds`, `--worker` of
    `--workers`): a one-line BenchError before any data is loaded."""
    if top < 0 or seeds < 1:
        raise BenchError(f"--rerank must be >= 0 and --rerank-seeds >= 1, got {top} and {seeds}")
    if workers < 1:
        raise BenchError(f"--workers must be at least 1, got {workers}")
    if top and not 0 <= worker < workers:
        raise BenchError(f"--worker must be below --workers ({workers}) when re-ranking, got {worker}")


def _key(number: int, seed: int) -> str:
    return f"rerank/{number}/{seed}"


def candidates(study, top: int) -> list:
    """The `top` completed trials with the best values (ties: the earlier trial first)."""
    import optuna

    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return sorted(done, key=lambda t: (-t.value, t.number))[:top]


def results(study) -> dict[int, dict[int, float]]:
    """{trial number: {seed: validation accuracy}} of the re-runs stored in the study."""
    out: dict[int, dict[int, float]] = {}
    for key, value in study.user_attrs.items():
        parts = key.split("/")
        if len(parts) == 3 and parts[0] == "rerank":
            out.setdefault(int(parts[1]), {})[int(parts[2])] = float(value)
    return out


def table(study) -> list[dict[str, Any]]:
    """One row per candidate of the study's recorded re-ranking (empty when none was asked for):
    its trial value, the extra seeds' values, whether it has them all, and the mean over all of them
    (None until complete, or when a re-run diverged)."""
    top, count = study.user_attrs.get("rerank_top"), study.user_attrs.get("rerank_seeds")
    if not top or not count:
        return []
    found, seeds = results(study), rerank_seeds(count)
    rows = []
    for t in candidates(study, top):
        got = found.get(t.number, {})
        values = [t.value] + [got[s] for s in seeds if s in got]
        complete = len(values) == count + 1
        rows.append({"number": t.number, "value": t.value, "params": dict(t.params),
                     "params_count": t.user_attrs.get("params_count"),
                     "seed_values": {str(s): got[s] for s in seeds if s in got}, "complete": complete,
                     "mean": sum(values) / len(values) if complete and not any(map(math.isnan, values)) else None})
    return rows


def chosen_trial(study):
    """The trial whose configuration the seed stage should train: the re-ranked best when every
    candidate has all its seeds, else the study's best trial (ValueError when none completed)."""
    best = study.best_trial
    rows = table(study)
    ranked = [r for r in rows if r["mean"] is not None]
    if not ranked or not all(r["complete"] for r in rows):
        return best
    number = max(ranked, key=lambda r: (r["mean"], -r["number"]))["number"]
    return next(t for t in study.get_trials(deepcopy=False) if t.number == number)


def rerank(study, cfg: Config, data, model_name: str, epochs: int, device, top: int, seeds: int,
           worker: int = 0, workers: int = 1) -> int:
    """Train this worker's share of the (candidate, seed) re-runs not stored yet; returns how many it
    trained. A run that diverges is stored as NaN (that candidate cannot be chosen)."""
    import bench.train as train_mod
    from bench.models import build_for_unit

    check_options(top, seeds, worker, workers)
    study.set_user_attr("rerank_top", top)
    study.set_user_attr("rerank_seeds", seeds)
    items = [(t, s) for t in candidates(study, top) for s in rerank_seeds(seeds)]
    if not items:
        raise BenchError(f"study '{study.study_name}' has no completed trial to re-rank")
    trained = 0
    for trial, seed in items[worker::workers]:
        if _key(trial.number, seed) in study.user_attrs:
            continue
        tcfg = apply_params(cfg, model_name, trial.params)
        tcfg.train.epochs = epochs
        model, train_cfg = build_for_unit(tcfg, model_name, data, seed)
        desc = f"{data.dataset}/{model_name}/trial{trial.number}/seed{seed}"
        try:
            value = float(train_mod.fit(model, data, train_cfg, device=device, seed=seed, desc=desc).best.val_acc)
        except train_mod.TrainingDiverged as exc:
            log.warning("%s diverged: %s", desc, exc)
            value = float("nan")
        study.set_user_attr(_key(trial.number, seed), value)
        trained += 1
        log.info("%s: val acc %.4f (the trial's seed gave %.4f)", desc, value, trial.value)
    return trained
