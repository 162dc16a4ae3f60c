"""The CLI end to end, in subprocesses, on tiny synthetic data."""
import json
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

from bench import results
from conftest import REPO, cli_env, keyword_texts, run_cli, write_dataset


def _args(tmp_path, cfg, data_dir, *extra):
    return ["--config", str(cfg), "--data-dir", str(data_dir), "--cache-dir", str(tmp_path / "cache"),
            "--out", str(tmp_path / "out"), "--report", str(tmp_path / "REPORT.md"), "--device", "cpu", *extra]


def test_end_to_end_writes_results_and_report_and_resumes(tmp_path, tiny_config, keyword_dir):
    proc = run_cli(*_args(tmp_path, tiny_config, keyword_dir, "--models", "rnn,attn_rnn", "--epochs", "1"))
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "out"
    runs, epochs = results.RunFolder(out).read_tables()
    assert len(runs) == 4 and set(runs["model"]) == {"rnn", "attn_rnn"} and set(runs["seed"]) == {0, 1}
    assert (runs["status"] == "ok").all() and runs["test_acc"].between(0, 1).all()
    assert len(epochs) == 4 and not epochs[results.EPOCH_COLUMNS].isna().any().any()
    assert (runs["params"] > 0).all()
    preds = pd.read_csv(results.RunFolder(out).predictions_path("imdb", "attn_rnn", 0))
    assert len(preds) == 400 and {"row", "label", "pred", "prob_0", "prob_1"} <= set(preds.columns)
    assert (preds["pred"] == preds[["prob_0", "prob_1"]].to_numpy().argmax(1)).all()
    env = json.loads((out / "environment.json").read_text())
    assert {"torch", "git_sha", "device", "python"} <= set(env)
    assert json.loads((out / "config.json").read_text())["train"]["epochs"] == 1
    report = (tmp_path / "REPORT.md").read_text()
    assert "| attn_rnn |" in report and "Verdict" in report
    brief = report.split("## The answer in brief")[1].split("## Setup")[0]  # the verdicts open the report
    assert "attn_rnn has higher test accuracy than rnn" in brief and "attn_rnn overfits less than rnn" in brief
    assert "default claim" in report  # the tiny config declares none
    assert "Confirmatory (the claim)" in report and "Overfitting, without the stopping confound" in report
    assert (out / "plots" / "imdb_curves.png").stat().st_size > 1000
    assert (out / "plots" / "imdb_gap.png").exists()
    attention = json.loads((out / "attention" / "imdb__attn_rnn__seed0.json").read_text())
    assert len(attention["examples"]) >= 2 and set(attention["top_words"]) == {"0", "1"}
    for ex in attention["examples"]:
        assert len(ex["tokens"]) == len(ex["weights"]) and abs(sum(ex["weights"]) - 1) < 1e-3
    assert "What attention looks at" in report and (out / "plots" / "imdb_attention.png").exists()

    # rerun: finished units are skipped; adding a model runs only the new units
    again = run_cli(*_args(tmp_path, tiny_config, keyword_dir, "--models", "all", "--epochs", "1"))
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("already finished, skipped") == 4
    assert "cache hit" in again.stderr
    runs2, _ = results.RunFolder(out).read_tables()
    assert len(runs2) == 8
    # same values; dtypes may differ: runs.csv writes floats with %.6g, so a rate of 100,000 tokens/s or
    # more reads back as an integer, and whether a column is all such values depends on the machine's speed
    pd.testing.assert_frame_equal(runs2[runs2["model"].isin(["rnn", "attn_rnn"])].reset_index(drop=True),
                                  runs.reset_index(drop=True), check_dtype=False)
    floor = runs2[runs2["model"] == "tfidf"]
    assert (floor["test_acc"] > 0.95).all()  # a bag of words solves the keyword task

    # the report is rebuilt from the files alone, byte-identically
    first, gap_png = (out / "REPORT.md").read_bytes(), (out / "plots" / "imdb_gap.png").read_bytes()
    rep = run_cli(str(out), module="bench.report")
    assert rep.returncode == 0, rep.stderr
    assert (out / "REPORT.md").read_bytes() == first
    assert (out / "plots" / "imdb_gap.png").read_bytes() == gap_png  # seeded jitter: the plots too

    # a rerun with nothing left to do leaves environment.json as the invocations that ran units wrote it
    # (a no-op rerun on another machine must not put its own machine in place of theirs)
    env_file = out / "environment.json"
    original = env_file.read_text()
    marked = {**json.loads(original), "device": "cuda", "gpu": "the machine that ran the units"}
    env_file.write_text(json.dumps(marked))
    noop = run_cli(*_args(tmp_path, tiny_config, keyword_dir, "--models", "all", "--epochs", "1"))
    assert noop.returncode == 0, noop.stderr
    assert noop.stderr.count("already finished, skipped") == 8
    assert json.loads(env_file.read_text()) == marked
    env_file.write_text(original)

    # an ablation folder joins the report: every variant against the reference, with parameter counts
    # (and another run folder, e.g. a longer-text budget, summarised at the end)
    abl = run_cli(str(out), "--ablation", str(out), "--other", str(out), "--output", str(tmp_path / "WITH_ABLATION.md"),
                  module="bench.report")
    assert abl.returncode == 0, abl.stderr
    text = (tmp_path / "WITH_ABLATION.md").read_text()
    other = text.split("## Other run: `")[1]
    assert "texts cut to" in other and "| attn_rnn |" in other and "_curves.png)" in other
    assert "### Statistical comparison" in other  # its statistics, nested one level down
    brief = text.split("## The answer in brief")[1].split("## Setup")[0]
    assert " epochs** (" in brief  # it tests the claim, so its verdicts open the report too
    assert "## Ablation" in text and "| attn_rnn | pooling=attention |" in text
    assert (out / "plots" / "imdb_ablation.png").exists()

    # a different config into the same folder is refused, naming the key, and nothing changes
    before = (out / "runs.csv").read_bytes()
    clash = run_cli(*_args(tmp_path, tiny_config, keyword_dir, "--epochs", "2"))
    assert clash.returncode == 2 and "'train.epochs' differs" in clash.stderr
    assert "Traceback" not in clash.stderr
    assert (out / "runs.csv").read_bytes() == before


def test_same_command_twice_gives_identical_metrics(tmp_path, tiny_config, keyword_dir):
    timing = ["train_seconds", "wall_seconds", "train_tokens_per_s", "epoch_seconds"]
    tables = []
    for name in ("a", "b"):
        args = _args(tmp_path / name, tiny_config, keyword_dir, "--models", "attn_rnn", "--seeds", "5",
                     "--epochs", "2", "--report", "none")
        proc = run_cli(*args)
        assert proc.returncode == 0, proc.stderr
        runs, epochs = results.RunFolder(tmp_path / name / "out").read_tables()
        tables.append((runs.drop(columns=[c for c in timing if c in runs]),
                       epochs.drop(columns=[c for c in timing if c in epochs])))
    pd.testing.assert_frame_equal(tables[0][0], tables[1][0])
    pd.testing.assert_frame_equal(tables[0][1], tables[1][1])


@pytest.mark.parametrize("extra, message", [
    (["--models", "rnn,cnn"], "unknown model 'cnn'"),
    (["--dataset", "mnist"], "unknown dataset 'mnist'"),
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--seeds", "1,x"], "malformed --seeds"),
    (["--seeds", "1,,2"], "malformed --seeds"),
    (["--epochs", "0"], "--epochs must be at least 1"),
    (["--epochs", "two"], "argument --epochs: invalid int value"),
    (["--frobnicate"], "unrecognized arguments: --frobnicate"),
])
def test_bad_options_are_one_line_errors(tmp_path, tiny_config, keyword_dir, extra, message):
    args = _args(tmp_path, tiny_config, keyword_dir, *extra)
    proc = run_cli(*args)
    assert proc.returncode == 2
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "out" / "runs.csv").exists()


def test_unknown_budget_is_a_one_line_error(tmp_path):
    proc = run_cli("--budget", "huge", "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and "unknown budget 'huge' (choose from ablation, full, quick, variance)" in proc.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_a_one_line_error(tmp_path, tiny_config, keyword_dir):
    proc = run_cli(*_args(tmp_path, tiny_config, keyword_dir, "--device", "cuda"))
    assert proc.returncode == 2 and "CUDA is not available" in proc.stderr


def test_bad_data_and_out_paths_are_one_line_errors(tmp_path, tiny_config, keyword_dir):
    bad = write_dataset(tmp_path / "bad", "imdb", keyword_texts(20, 0).rename(columns={"text": "review"}),
                        keyword_texts(10, 1))
    proc = run_cli(*_args(tmp_path, tiny_config, bad))
    assert proc.returncode == 2 and "expected columns 'text' and 'label'" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run_cli(*_args(tmp_path, tiny_config, tmp_path / "missing"))
    assert proc.returncode == 2 and "data folder not found" in proc.stderr
    (tmp_path / "file").write_text("x")
    args = _args(tmp_path, tiny_config, keyword_dir)
    args[args.index("--out") + 1] = str(tmp_path / "file")
    proc = run_cli(*args)
    assert proc.returncode == 2 and "is a file, not a folder" in proc.stderr
    assert (tmp_path / "file").read_text() == "x"


def test_no_local_data_and_no_hub_says_how_to_point_at_files(tmp_path, tiny_config):
    args = _args(tmp_path, tiny_config, "x")
    i = args.index("--data-dir")
    del args[i:i + 2]
    proc = run_cli(*args, env={"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")})
    assert proc.returncode == 2, proc.stderr
    assert "--data-dir" in proc.stderr and "BENCH_DATA_DIR" in proc.stderr


def test_help_lists_every_option():
    proc = run_cli("--help")
    assert proc.returncode == 0
    for opt in ("--models", "--dataset", "--device", "--seeds", "--config", "--data-dir", "--out", "--epochs",
                "--budget", "--report"):
        assert opt in proc.stdout


def test_kill_9_mid_run_then_rerun_gives_every_row_exactly_once(tmp_path, tiny_config, keyword_dir):
    args = _args(tmp_path, tiny_config, keyword_dir, "--epochs", "2", "--report", "none")
    units = tmp_path / "out" / "units"
    proc = subprocess.Popen([sys.executable, "-m", "bench.run", *args], env=cli_env(), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (units.exists() and len(list(units.glob("*.json"))) >= 2) and time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished_before = {p.name: p.read_bytes() for p in units.glob("*.json")}
    assert 2 <= len(finished_before) < 6

    rerun = run_cli(*args)
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stderr.count("already finished, skipped") == len(finished_before)
    runs, epochs = results.RunFolder(tmp_path / "out").read_tables()
    assert len(runs) == 6 and not runs.duplicated(["dataset", "model", "seed"]).any()
    assert len(epochs) == runs["epochs_run"].sum()
    assert not epochs.duplicated(["dataset", "model", "seed", "epoch"]).any()
    for name, data in finished_before.items():  # finished units were not re-run
        assert (units / name).read_bytes() == data
    assert not list((tmp_path / "out").rglob("*.tmp"))
    # the killed invocation is still listed (which machine and code made its units), then the rerun
    invocations = json.loads((tmp_path / "out" / "environment.json").read_text())["invocations"]
    assert len(invocations) == 2 and invocations[0]["unrecorded"] and invocations[0]["device"] == "cpu"
    assert "wall_seconds" not in invocations[0] and invocations[0]["git_sha"] == invocations[1]["git_sha"]
    assert invocations[1]["units_run"] == 6 - len(finished_before)


def test_fresh_moves_old_results_aside(tmp_path, tiny_config, keyword_dir):
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({"train": {"epochs": 99}}))
    (out / "runs.csv").write_text("old")
    proc = run_cli(*_args(tmp_path, tiny_config, keyword_dir, "--models", "rnn", "--seeds", "0", "--epochs", "1",
                          "--report", "none", "--fresh"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out.old1" / "runs.csv").read_text() == "old"
    assert len(results.RunFolder(out).read_tables()[0]) == 1


def test_tune_then_seed_stage_then_skip_tune_reads_the_same_best(tmp_path, tiny_config, keyword_dir):
    from test_tune import TINY_SEARCH

    search = tmp_path / "search.toml"
    search.write_text(TINY_SEARCH)
    # the seed stage trains as the trials did (2 epochs, the search file's), so its seed 0 re-runs the best trial
    args = _args(tmp_path, tiny_config, keyword_dir, "--models", "rnn,tfidf", "--seeds", "0,1", "--epochs", "2",
                 "--search", str(search))
    # both trials trained again with one more seed; the seed stage takes the better mean
    proc = run_cli(*args, "--tune", "--trials", "2", "--rerank", "2", "--rerank-seeds", "1")
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "out"
    trials = pd.read_csv(out / "trials.csv")
    assert len(trials) == 2 and set(trials["model"]) == {"rnn"}
    runs, _ = results.RunFolder(out).read_tables()
    assert set(runs["model"]) == {"rnn", "tfidf"}
    report = (tmp_path / "REPORT.md").read_text()
    assert "## Hyper-parameter tuning" in report and "**Re-ranked over more seeds.** The 2 best trials" in report
    assert report.count("**yes**") == 1
    # the best trial against its seeds: seed 0 (every trial's seed) re-runs it exactly on the CPU
    best = json.loads((out / "tuning.json").read_text())["imdb/rnn"]["best"]["value"]
    rnn = runs[runs["model"] == "rnn"].set_index("seed")["best_val_acc"]
    assert rnn[0] == pytest.approx(best, abs=1e-9)
    assert (f"The seed stage trained this configuration with 2 seeds: validation accuracy **{rnn.mean():.2%}**"
            in report and f"gives {best:.2%} here (the trial, re-run)" in report)
    # a tuned folder reported beside an untuned one (here itself): paired tuned − untuned per tuned model
    rep = run_cli(str(out), "--tuned", str(out), "--output", str(tmp_path / "WITH_TUNED.md"), module="bench.report")
    assert rep.returncode == 0, rep.stderr
    text = (tmp_path / "WITH_TUNED.md").read_text()
    assert "### Hyper-parameter tuning" in text  # nested one level down
    # the heading names the tuned folder even against the main run (a report can hold several)
    assert f"## Tuned models: budget {json.loads((out / 'config.json').read_text())['budget']} (`" in text
    assert "| rnn | 2 |" in text and "| +0.00 [+0.00, +0.00] |" in text and "| tfidf | 2 |" not in text.split("Tuned − untuned")[1]
    assert "--tuned" in text.splitlines()[2]  # the header names the command that made it
    before_setup = text.split("## Setup")[0]
    # only rnn was tuned, so the tuned run cannot test the claim (attn_rnn vs rnn): it is not among the
    # verdicts in brief, and the arms section names which model it tuned
    assert "tuned: rnn (`" in before_setup and "tuned**" not in before_setup
    # the seed stage coordinated from the storage finds the same configuration: nothing to re-run
    again = run_cli(*args, "--skip-tune")
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("already finished, skipped") == 4
    # a unit of an earlier best (here: its record says another hash) is set aside, not deleted, and rerun
    folder = results.RunFolder(out)
    unit = json.loads(folder.unit_path("imdb", "rnn", 0).read_text())
    right, unit["run"]["config_hash"] = unit["run"]["config_hash"], "earlierbest"
    folder.unit_path("imdb", "rnn", 0).write_text(json.dumps(unit))
    rerun = run_cli(*args, "--skip-tune")
    assert rerun.returncode == 0, rerun.stderr
    assert "made with an earlier best configuration (hash earlierbest" in rerun.stderr
    kept = out / "superseded" / "earlierbest"
    assert json.loads((kept / "units" / "imdb__rnn__seed0.json").read_text()) == unit
    assert (kept / "predictions" / "imdb__rnn__seed0.csv.gz").is_file()
    runs3, _ = folder.read_tables()
    assert len(runs3) == 4 and runs3.loc[runs3["model"] == "rnn", "config_hash"].tolist() == [right, right]
    # an untuned run keeps refusing a unit made with another configuration
    plain = run_cli(*_args(tmp_path, tiny_config, keyword_dir, "--models", "rnn", "--seeds", "0", "--epochs", "2"))
    assert plain.returncode == 2 and "was made with another configuration" in plain.stderr


# ----------------------------------------------------------------------------- the folder check


def test_a_changed_or_added_claim_is_refused_and_old_folders_resume_under_the_defaults(tmp_path):
    from bench import config
    from bench.run import prepare_out_dir

    cfg = config.load(config.budget_path("quick"))
    folder = results.RunFolder(tmp_path / "out")
    prepare_out_dir(folder, cfg)
    stored = json.loads(folder.config_json.read_text())
    assert stored["claim"]["metrics"] == {"gap_matched": "lower", "test_acc": "higher"}
    prepare_out_dir(folder, cfg)  # the same claim: fine
    changed = config.load(config.budget_path("quick"))
    changed.claim.metrics = {"test_acc": "higher"}
    with pytest.raises(config.BenchError, match="'claim.metrics.gap_matched' differs"):
        prepare_out_dir(folder, changed)
    changed = config.load(config.budget_path("quick"))
    changed.vary = ["init"]
    with pytest.raises(config.BenchError, match="'vary' differs"):
        prepare_out_dir(folder, changed)
    # a folder made before `claim` and `vary` existed resumes under the defaults (no claim, init + order) ...
    old = config.load(config.budget_path("quick"))
    old.claim, old.vary = None, ["order", "init"]
    raw = old.to_dict()
    del raw["claim"], raw["vary"]
    results.atomic_write_json(folder.config_json, raw)
    prepare_out_dir(folder, old)
    # ... but declaring a claim on results that already exist is refused
    results.atomic_write_json(folder.config_json, raw)
    with pytest.raises(config.BenchError, match="'claim' differs"):
        prepare_out_dir(folder, cfg)


def test_git_sha_is_dirty_for_code_changes_not_for_results(tmp_path):
    """A run writing into a committed results folder must not mark its own provenance "-dirty"."""
    import subprocess

    from bench.run import git_sha

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "results" / "quick").mkdir(parents=True)
    (tmp_path / "results" / "quick" / "runs.csv").write_text("a\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", ".")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init")
    clean = git_sha(tmp_path)
    assert len(clean) == 40 and not clean.endswith("-dirty")
    (tmp_path / "results" / "quick" / "runs.csv").write_text("a\nb\n")
    assert git_sha(tmp_path) == clean
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_sha(tmp_path) == clean + "-dirty"
