"""Typed records and the results folder's layout: what a unit file holds and how tables derive from it."""
from __future__ import annotations

import dataclasses
import json

import pandas as pd
import pytest

from bench import config, results
from bench.config import BenchError
from bench.results import EpochRecord, RunFolder, RunRecord, UnitRecord


def _epoch(epoch: int, val_acc: float) -> EpochRecord:
    return EpochRecord(epoch=epoch, train_loss=0.5, train_acc=0.8, train_eval_loss=0.4, train_eval_acc=0.85,
                       val_loss=0.45, val_acc=val_acc, gap_acc=0.85 - val_acc, gap_loss=0.05, lr=1e-3,
                       epoch_seconds=2.0, train_tokens_per_s=1000.0)


def test_csv_columns_are_derived_from_the_records():
    assert results.RUN_COLUMNS == [f.name for f in dataclasses.fields(RunRecord)]
    assert results.RUN_COLUMNS[:5] == ["dataset", "model", "seed", "status", "reason"]
    assert results.EPOCH_COLUMNS == ["dataset", "model", "seed"] + [f.name for f in dataclasses.fields(EpochRecord)]


def test_unit_round_trip_and_tables_rebuilt_in_a_stable_order(tmp_path):
    folder = RunFolder(tmp_path / "run")
    ok = UnitRecord(RunRecord("imdb", "rnn", 1, params=10, best_epoch=2, test_acc=0.75),
                    [_epoch(1, 0.7), _epoch(2, 0.72)], {"kind": "rnn"})
    failed = UnitRecord(RunRecord("imdb", "attn_rnn", 0, status=results.FAILED, reason="training loss became nan"))
    for record in (ok, failed):
        folder.save_unit(record)
    assert folder.load_unit("imdb", "rnn", 1) == ok
    assert folder.load_unit("imdb", "rnn", 7) is None
    assert folder.unit_path("imdb", "rnn", 1) == tmp_path / "run" / "units" / "imdb__rnn__seed1.json"
    on_disk = json.loads(folder.unit_path("imdb", "rnn", 1).read_text())
    assert on_disk["epochs"][0]["dataset"] == "imdb" and on_disk["epochs"][0]["seed"] == 1  # keys on every row
    runs, epochs = folder.rebuild_tables()
    assert list(runs.columns) == results.RUN_COLUMNS and list(runs["model"]) == ["attn_rnn", "rnn"]
    assert list(epochs["epoch"]) == [1, 2] and (epochs["model"] == "rnn").all()
    again, _ = folder.read_tables()
    assert list(results.ok_runs(again)["model"]) == ["rnn"]
    assert list(results.failed_runs(again)["reason"]) == ["training loss became nan"]
    assert pd.isna(again.loc[again["model"] == "attn_rnn", "test_acc"]).all()


def test_the_stored_config_parses_back_through_the_config_loader(tmp_path):
    cfg = config.load(config.budget_path("quick"))
    folder = RunFolder(tmp_path)
    results.atomic_write_json(folder.config_json, cfg.to_dict())
    back = folder.stored_config()
    assert back == cfg and back.model["transformer"].pooling == "mean"
    folder.config_json.write_text("{not json")
    with pytest.raises(BenchError, match="config.json is missing or unreadable"):
        folder.stored_config()


def test_layout_and_defaults_are_computed_in_one_place(tmp_path):
    folder = RunFolder(tmp_path / "results" / "quick")
    assert folder.sqlite_url() == f"sqlite:///{(tmp_path / 'results' / 'quick' / 'optuna.db').resolve()}"
    assert folder.speed_csv == tmp_path / "results" / "speed.csv"
    assert folder.predictions_path("ag_news", "rnn", 3).name == "ag_news__rnn__seed3.csv.gz"
    assert results.default_run_dir("quick") == results.default_run_dir("quick", tuned=False)
    assert str(results.default_run_dir("full", tuned=True)) == "results/full-tuned"
    assert not folder.is_run()
    with pytest.raises(BenchError, match="not a folder"):
        folder.read_runs()


def test_dataset_title_says_when_training_used_a_subset(tmp_path):
    folder = RunFolder(tmp_path)
    results.atomic_write_json(folder.datasets_json, {"ag_news": {"train": 8397, "val": 933},
                                                     "imdb": {"train": 22500, "val": 2500}})
    assert folder.dataset_title("ag_news") == "AG News (train: 9,330 of 120,000 rows)"
    assert folder.dataset_title("imdb") == "IMDB"


def test_claim_hash_is_the_last_run_column_and_old_unit_files_still_load(tmp_path):
    assert results.RUN_COLUMNS[-1] == "claim_hash"
    folder = RunFolder(tmp_path / "run")
    record = UnitRecord(RunRecord("imdb", "rnn", 0, test_acc=0.8, claim_hash="abc123def456"), [_epoch(1, 0.7)])
    folder.save_unit(record)
    assert folder.load_unit("imdb", "rnn", 0).run.claim_hash == "abc123def456"
    raw = json.loads(folder.unit_path("imdb", "rnn", 0).read_text())
    del raw["run"]["claim_hash"]  # a unit written before the field existed
    folder.unit_path("imdb", "rnn", 0).write_text(json.dumps(raw))
    old = folder.load_unit("imdb", "rnn", 0)
    assert old is not None and old.run.claim_hash is None and old.run.test_acc == 0.8
    runs, _ = folder.rebuild_tables()
    assert list(runs.columns)[-1] == "claim_hash" and runs["claim_hash"].isna().all()


def test_claim_declared_reads_config_json(tmp_path):
    folder = RunFolder(tmp_path)
    assert not folder.claim_declared()  # no config.json
    cfg = config.load(config.budget_path("quick"))
    results.atomic_write_json(folder.config_json, cfg.to_dict())
    assert folder.claim_declared()
    old = cfg.to_dict()
    del old["claim"], old["vary"]  # a config.json from before claims and `vary`
    results.atomic_write_json(folder.config_json, old)
    assert not folder.claim_declared()
    back = folder.stored_config()
    assert back.claim is None and back.vary == ["init", "order"]
