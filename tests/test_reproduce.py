"""`python -m bench.reproduce` on a tiny synthetic run: reruns match bit for bit here, a tampered
unit is reported with how far it moved, and bad input is a one-line error."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from bench import reproduce
from bench.results import RunFolder, atomic_write_csv
from conftest import run_cli


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, keyword_dir):
    from conftest import TINY_CONFIG

    root = tmp_path_factory.mktemp("repro")
    cfg = root / "tiny.toml"
    cfg.write_text(TINY_CONFIG)
    out = root / "out"
    proc = run_cli("--config", str(cfg), "--data-dir", str(keyword_dir), "--cache-dir", str(root / "cache"),
                   "--out", str(out), "--report", "none", "--device", "cpu", "--models", "rnn,tfidf",
                   "--epochs", "1")
    assert proc.returncode == 0, proc.stderr
    return root, out


def _args(root, out, scratch, *extra, keyword_dir):
    return [str(out), "--data-dir", str(keyword_dir), "--cache-dir", str(root / "cache"), "--scratch",
            str(root / scratch), "--device", "cpu", *extra]


def test_reruns_match_bit_for_bit_and_a_moved_unit_is_measured(tiny_run, keyword_dir, capsys):
    root, out = tiny_run
    assert reproduce.main(_args(root, out, "s1", "--units", "4", "--record", keyword_dir=keyword_dir)) == 0
    printed = capsys.readouterr().out
    assert "4 of 4 rerun units reproduced bit for bit" in printed and "same commit" in printed
    table = pd.read_csv(root / "s1" / "reproduction.csv")
    assert list(table.columns) == reproduce.COLUMNS and table["bit_identical"].all()
    assert (root / "s1" / "units" / "imdb__rnn__seed1.json").is_file()
    pd.testing.assert_frame_equal(pd.read_csv(out / "reproduction.csv"), table)  # --record
    from bench.report import rerun_line

    assert "Recorded check (reproduction.csv): 4 of 4 units reproduced bit for bit; same commit" in rerun_line(
        RunFolder(out))  # what the report says a reader should expect

    # tamper with one committed unit: its record says another accuracy, another commit, and one
    # prediction differs
    folder = RunFolder(out)
    path = folder.unit_path("imdb", "rnn", 0)
    raw = json.loads(path.read_text())
    raw["run"]["test_acc"] -= 0.01
    raw["run"]["git_sha"] = "0123456789ab"
    path.write_text(json.dumps(raw))
    preds = folder.read_predictions("imdb", "rnn", 0)
    preds.loc[0, "pred"] = 1 - preds.loc[0, "pred"]
    atomic_write_csv(folder.predictions_path("imdb", "rnn", 0), preds)
    assert reproduce.main(_args(root, out, "s2", "--units", "4", keyword_dir=keyword_dir)) == 0
    printed = capsys.readouterr().out
    assert "3 of 4 rerun units reproduced bit for bit" in printed and "the commit differs" in printed
    moved = pd.read_csv(root / "s2" / "reproduction.csv").set_index(["model", "seed"]).loc[("rnn", 0)]
    assert not moved["bit_identical"] and moved["test_acc_diff"] == pytest.approx(0.01)
    assert set(moved["differing_fields"].split()) == {"test_acc", "predictions"}
    assert moved["predictions_changed"] == 1 and moved["git_sha_then"] == "0123456789ab"


def test_the_sample_is_fixed_by_its_seed():
    runs = pd.DataFrame({"dataset": "imdb", "model": ["rnn", "tfidf"] * 5, "seed": sorted(list(range(5)) * 2),
                         "status": "ok"})
    first = reproduce.sample_units(runs, 3, seed=0)
    assert first == reproduce.sample_units(runs, 3, seed=0) and len(set(first)) == 3
    assert len(reproduce.sample_units(runs, 50, seed=0)) == 10


@pytest.mark.parametrize("extra, message", [
    (["--units", "0"], "--units must be at least 1"),
    (["--units", "x"], "invalid int value"),
])
def test_bad_input_is_a_one_line_error(tiny_run, keyword_dir, extra, message):
    root, out = tiny_run
    proc = run_cli(*_args(root, out, "bad", *extra, keyword_dir=keyword_dir), module="bench.reproduce")
    assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_missing_folder_and_busy_scratch(tiny_run, tmp_path, capsys):
    root, out = tiny_run
    assert reproduce.main([str(tmp_path / "nope")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("x")
    assert reproduce.main([str(out), "--scratch", str(busy)]) == 2
    assert "must be a new or empty folder" in capsys.readouterr().err
