"""Every run visible in an experiment tracker (`bench.run --track mlflow`, the optional `track` extra).

One MLflow experiment per results folder; per invocation a parent run holding the resolved config,
the environment record and, at the end, REPORT.md and the plots; under it one nested run per
finished unit (its parameters, per-epoch metrics as steps, final metrics, predictions file) and one
per tuning study, with a nested run per trial. The CSVs stay the source of truth: tracking happens
in this (parent) process after a unit is safely on disk, and any tracking failure is one warning
line, after which tracking is switched off for the rest of the invocation — never a lost result.
"""
from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.config import BenchError, Config, dotted
from bench.results import RunFolder, UnitRecord

log = logging.getLogger("bench")
TRACKERS = ("none", "mlflow")


class Tracker:
    """No tracking: every hook does nothing (the default)."""

    def unit_finished(self, record: UnitRecord) -> None:
        pass

    def study_finished(self, dataset: str, model: str, trials) -> None:
        pass

    def close(self, report_files: list[Path] = ()) -> None:
        pass


class MlflowTracker(Tracker):
    """Logs through `MlflowClient` with explicit run ids (no global active run), so workers and
    nested runs never mix."""

    def __init__(self, folder: RunFolder, uri: str | None, cfg: Config, env: dict[str, Any]):
        # a down server should cost seconds, not MLflow's default minutes of retries
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise BenchError("--track mlflow needs MLflow: pip install -e '.[track]'") from None
        self.folder = folder
        self.uri = uri or f"sqlite:///{folder.path.resolve() / 'mlflow.db'}"
        self.on = True
        self.parent = None
        self.client = MlflowClient(tracking_uri=self.uri)
        self._guard("start tracking", self._start, cfg, env)

    # ------------------------------------------------------------ plumbing
    def _guard(self, what: str, fn, *args) -> Any:
        """Run one tracking call; the first failure is one warning line and tracking stops."""
        if not self.on:
            return None
        try:
            return fn(*args)
        except Exception as exc:  # any client, network or server error
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            log.warning("tracking to %s failed (%s: %s: %s); tracking is off for this run, results are safe "
                        "in %s", self.uri, what, type(exc).__name__, first, self.folder.path)
            self.on = False
            return None

    def _experiment(self) -> str:
        name = str(self.folder.path)
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        artifacts = None
        if self.uri.startswith("sqlite:"):  # a local store keeps its artifacts inside --out too
            artifacts = (self.folder.path.resolve() / "mlartifacts").as_uri()
        return self.client.create_experiment(name, artifact_location=artifacts)

    def _start(self, cfg: Config, env: dict[str, Any]) -> None:
        self.experiment = self._experiment()
        run = self.client.create_run(self.experiment, run_name=f"invocation {env.get('git_sha', '')[:12]}",
                                     tags={"bench.kind": "invocation", "bench.folder": str(self.folder.path)})
        self.parent = run.info.run_id
        self.client.log_dict(self.parent, cfg.to_dict(), "config.json")
        self.client.log_dict(self.parent, env, "environment.json")
        log.info("tracking to %s, experiment '%s'", self.uri, self.folder.path)

    def _child(self, name: str, tags: dict[str, str]) -> str:
        run = self.client.create_run(self.experiment, run_name=name,
                                     tags={"mlflow.parentRunId": self.parent, **tags})
        return run.info.run_id

    # ------------------------------------------------------------ hooks
    def unit_finished(self, record: UnitRecord) -> None:
        self._guard(f"unit {record.run.dataset}/{record.run.model}/seed{record.run.seed}", self._log_unit, record)

    def _log_unit(self, record: UnitRecord) -> None:
        from mlflow.entities import Metric, Param

        run = record.run
        rid = self._child(f"{run.dataset}/{run.model}/seed{run.seed}",
                          {"bench.kind": "unit", "dataset": run.dataset, "model": run.model,
                           "seed": str(run.seed), "status": run.status})
        params = {"dataset": run.dataset, "model_name": run.model, "seed": str(run.seed),
                  "config_hash": str(run.config_hash),  # and the model section as MLflow's flat string parameters
                  **{k: str(v)[:500] for k, v in dotted(record.model_config, "model").items()}}
        final = {k: v for k, v in asdict(run).items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "seed" and math.isfinite(v)}
        metrics = [Metric(k, float(v), 0, 0) for k, v in final.items()]
        for e in record.epochs:
            metrics += [Metric(k, float(v), 0, e.epoch) for k, v in asdict(e).items() if k != "epoch"]
        self.client.log_batch(rid, params=[Param(k, v) for k, v in params.items()])
        for start in range(0, len(metrics), 900):  # the server takes at most 1000 per batch
            self.client.log_batch(rid, metrics=metrics[start:start + 900])
        predictions = self.folder.predictions_path(run.dataset, run.model, run.seed)
        if predictions.is_file():
            self.client.log_artifact(rid, str(predictions), "predictions")
        self.client.set_terminated(rid, "FINISHED" if run.ok else "FAILED")

    def study_finished(self, dataset: str, model: str, trials) -> None:
        self._guard(f"study {dataset}/{model}", self._log_study, dataset, model, trials)

    def _log_study(self, dataset: str, model: str, trials) -> None:
        study = self._child(f"tuning {dataset}/{model}", {"bench.kind": "study", "dataset": dataset, "model": model})
        for t in trials.itertuples():
            rid = self.client.create_run(self.experiment, run_name=f"trial {t.number}",
                                         tags={"mlflow.parentRunId": study, "bench.kind": "trial",
                                               "state": str(t.state), "reason": str(t.reason)[:250]}).info.run_id
            for k, v in json.loads(t.params or "{}").items():
                self.client.log_param(rid, k, v)
            if isinstance(t.value, float) and math.isfinite(t.value):
                self.client.log_metric(rid, "val_acc", t.value)
            self.client.set_terminated(rid, "FINISHED" if t.state == "COMPLETE" else "KILLED")
        self.client.set_terminated(study)

    def close(self, report_files: list[Path] = ()) -> None:
        def finish() -> None:
            for path in report_files:
                if Path(path).is_file():
                    self.client.log_artifact(self.parent, str(path))
            if self.folder.plots.is_dir():
                self.client.log_artifacts(self.parent, str(self.folder.plots), "plots")
            self.client.set_terminated(self.parent)

        if self.parent is not None:
            self._guard("finish the invocation", finish)


def make_tracker(kind: str, folder: RunFolder, uri: str | None, cfg: Config, env: dict[str, Any]) -> Tracker:
    if kind == "none":
        return Tracker()
    if kind == "mlflow":
        return MlflowTracker(folder, uri, cfg, env)
    raise BenchError(f"unknown tracker '{kind}' (choose from {', '.join(TRACKERS)})")
