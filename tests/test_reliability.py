"""Issue 14: every bad input keeps the README's promise (exit 2, one line, no traceback, nothing
changed), results never mix silently, nothing is written outside --out, one run per folder, and
the repository's report is composed only from its declared folders. All through the real CLIs."""
from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from bench.config import BenchError
from bench.results import LOCK_HOLDER_NAME, RecipePair, RunFolder, TunedRun, load_manifest
from conftest import REPO, TINY_CONFIG, cli_env, default_sigint, keyword_texts, run_cli, write_dataset


def snapshot(*roots: Path) -> dict[str, bytes]:
    """Every file under the roots, by path, with its bytes (folders included, as empty entries)."""
    out = {}
    for root in roots:
        if root.is_file():
            out[str(root)] = root.read_bytes()
        for p in sorted(root.rglob("*")) if root.is_dir() else []:
            out[str(p)] = p.read_bytes() if p.is_file() else b"<dir>"
    return out


def one_line_refusal(proc: subprocess.CompletedProcess, message: str, only: bool = True) -> None:
    """Exit 2, no traceback, one error line naming the problem; with `only`, nothing else on stderr
    (the refusal came before the run started), else it is the last line after the run's log."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and (len(lines) == 1 or not only), proc.stderr
    assert [line for line in lines if line.startswith("error:")] == lines[-1:], proc.stderr
    assert message in lines[-1], proc.stderr


def _base(out: Path, cfg: Path, data: Path, cache: Path, *extra: str, models: str = "rnn",
          seeds: str = "0") -> list[str]:
    return ["--config", str(cfg), "--data-dir", str(data), "--cache-dir", str(cache), "--out", str(out),
            "--report", "none", "--device", "cpu", "--models", models, "--seeds", seeds, "--epochs", "1", *extra]


@pytest.fixture(scope="module")
def finished(tmp_path_factory, keyword_dir) -> dict[str, Path]:
    """One finished tiny run (rnn, attn_rnn; seeds 0, 1; one epoch) to damage and rerun against."""
    root = tmp_path_factory.mktemp("finished")
    cfg = root / "tiny.toml"
    cfg.write_text(TINY_CONFIG)
    out, cache = root / "out", root / "cache"
    proc = run_cli(*_base(out, cfg, keyword_dir, cache, models="rnn,attn_rnn", seeds="0,1"))
    assert proc.returncode == 0, proc.stderr
    return {"out": out, "config": cfg, "cache": cache, "data": keyword_dir}


@pytest.fixture
def run_copy(finished, tmp_path) -> dict[str, Path]:
    """A private copy of the finished run, with a scratch folder beside it."""
    out = tmp_path / "out"
    shutil.copytree(finished["out"], out)
    (tmp_path / "afile").write_text("x")
    return {**finished, "out": out, "tmp": tmp_path}


def _as_made_before(config_json: Path, *keys: str, models: tuple[str, ...] = ()) -> dict:
    """Remove model keys from a stored config.json, as in a folder made before they existed (every
    model's section unless `models` names some); returns the config as stored."""
    stored = json.loads(config_json.read_text())
    for name, section in stored["model"].items():
        if not models or name in models:
            for key in keys:
                del section[key]
    config_json.write_text(json.dumps(stored))
    return stored


def _config_variant(tmp: Path, old: str, new: str) -> Path:
    assert old in TINY_CONFIG
    path = tmp / "variant.toml"
    path.write_text(TINY_CONFIG.replace(old, new, 1))
    return path


# ----------------------------------------------------------------------------- bench.run: bad inputs

def _case_config(tmp, text_old, text_new):
    return ["--config", str(_config_variant(tmp, text_old, text_new))]


RUN_CASES = {
    # silent fallbacks (an unset shell variable must not launch the config's whole list)
    "models empty": (lambda t: ["--models", ""], "malformed --models list ''"),
    "dataset empty": (lambda t: ["--dataset", ""], "malformed --dataset list ''"),
    "out empty": (lambda t: ["--out", ""], "--out is empty"),
    "config empty": (lambda t: ["--config", ""], "--config is empty"),
    "models repeated": (lambda t: ["--models", "rnn,rnn"], "config key 'models' has duplicates"),
    "dataset repeated": (lambda t: ["--dataset", "imdb,imdb"], "config key 'datasets' has duplicates"),
    "trials 0": (lambda t: ["--tune", "--trials", "0"], "--trials must be at least 1"),
    "trials without tune": (lambda t: ["--trials", "3"], "apply only with --tune"),
    "tune timeout 0": (lambda t: ["--tune", "--tune-timeout", "0"], "--tune-timeout must be a positive"),
    "rerank without tune": (lambda t: ["--skip-tune", "--rerank", "3"], "--rerank applies only with --tune"),
    "rerank seeds 0": (lambda t: ["--tune", "--rerank", "3", "--rerank-seeds", "0"], "--rerank-seeds >= 1"),
    "epochs huge": (lambda t: ["--epochs", "100000"], "'train.epochs' must be at most 10,000"),
    "epochs 1e20": (lambda t: ["--epochs", "1e20"], "invalid int value: '1e20'"),
    # seeds outside NumPy's range
    "seed 2**32": (lambda t: ["--seeds", str(2**32)], "seed 4294967296 is outside"),
    "seed negative": (lambda t: ["--seeds", "-1"], "seed -1 is outside"),
    # paths: a file, below a file, a folder where a file goes, a storage folder that does not exist
    "cache dir is a file": (lambda t: ["--cache-dir", str(t / "afile")], "--cache-dir"),
    "out below a file": (lambda t: ["--out", str(t / "afile" / "out")], "lies below"),
    "report below a file": (lambda t: ["--report", str(t / "afile" / "R.md")], "afile is a file"),
    "report is a folder": (lambda t: ["--report", str(t)], "is a folder"),
    "sqlite storage elsewhere": (lambda t: ["--tune", "--storage", f"sqlite:///{t}/nowhere/deep/o.db"],
                                 "does not exist"),
    "out unrelated folder": (lambda t: ["--out", str(t / "unrelated")], "holds no bench results"),
    # config: unsafe names, empty lists, non-finite numbers, a changed setting
    "model name with ..": (lambda t: _case_config(t, "[model.rnn]", '[model."x/../../../m"]\nkind = "rnn"\n'
                                                  "[model.rnn]"), "is not a safe name"),
    "budget a path": (lambda t: _case_config(t, 'budget = "tiny"', 'budget = "/tmp/evil"'), "is not a safe name"),
    "lr nan": (lambda t: _case_config(t, "lr = 5e-3", "lr = nan"), "'train.lr' must be a finite number"),
    "other settings": (lambda t: _case_config(t, "vocab_size = 200", "vocab_size = 300"), "'data.vocab_size' differs"),
}


@pytest.mark.parametrize("case", list(RUN_CASES))
def test_bad_run_inputs_are_one_line_and_change_nothing(run_copy, case):
    make_args, message = RUN_CASES[case]
    tmp = run_copy["tmp"]
    (tmp / "unrelated").mkdir()
    (tmp / "unrelated" / "notes.txt").write_text("mine")
    extra = make_args(tmp)
    before = snapshot(tmp)
    args = _base(run_copy["out"], run_copy["config"], run_copy["data"], run_copy["cache"])
    for opt in {a for a in extra if a.startswith("--")} & set(args):  # the case's value replaces the base's
        i = args.index(opt)
        del args[i:i + 2]
    proc = run_cli(*args, *extra, timeout=120)
    one_line_refusal(proc, message)
    assert snapshot(tmp) == before


def test_datasets_empty_in_config_is_refused(tmp_path, keyword_dir):
    cfg = _config_variant(tmp_path, 'datasets = ["imdb"]', "datasets = []")
    proc = run_cli(*_base(tmp_path / "out", cfg, keyword_dir, tmp_path / "cache"))
    one_line_refusal(proc, "'datasets' must list at least one dataset")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("damage, message", [
    (lambda out: (out / "units" / "stray.json").write_text('{"note": "mine"}'), "stray.json is not a readable unit"),
    (lambda out: (out / "units" / "imdb__rnn__seed0.json").write_text("{not json"), "is not a readable unit"),
    (lambda out: (out / "units" / "notes.txt").write_text("x"), "notes.txt is not a readable unit"),
    (lambda out: (out / "config.json").write_text("[1, 2"), "config.json is unreadable"),
])
def test_a_damaged_folder_stops_the_run_before_training(run_copy, damage, message):
    damage(run_copy["out"])
    before = snapshot(run_copy["tmp"])
    proc = run_cli(*_base(run_copy["out"], run_copy["config"], run_copy["data"], run_copy["cache"]), timeout=120)
    one_line_refusal(proc, message)
    assert snapshot(run_copy["tmp"]) == before


def test_a_first_run_that_fails_before_training_leaves_no_folder(tmp_path, tiny_config):
    bad = write_dataset(tmp_path / "bad", "imdb", keyword_texts(20, 0).rename(columns={"text": "review"}),
                        keyword_texts(10, 1))
    proc = run_cli(*_base(tmp_path / "out", tiny_config, bad, tmp_path / "cache"))
    one_line_refusal(proc, "expected columns 'text' and 'label'", only=False)
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- 2. no silent mixing of data

def test_other_data_is_refused_and_config_json_keeps_its_units(run_copy):
    small = write_dataset(run_copy["tmp"] / "small", "imdb", keyword_texts(300, 5), keyword_texts(100, 6))
    before = snapshot(run_copy["tmp"] / "out")
    proc = run_cli(*_base(run_copy["out"], run_copy["config"], small, run_copy["cache"], "--seeds", "7"), timeout=300)
    one_line_refusal(proc, "holds imdb results made from other data", only=False)
    assert snapshot(run_copy["tmp"] / "out") == before  # no seed 7 in config.json, datasets.json as it was


def test_a_models_first_unit_stores_its_section_as_run(run_copy):
    """config.json stored the transformer's section when the folder was made (no transformer unit
    yet); a key added to that section since (allowed on resume) reaches config.json with the first unit,
    and the other models' sections stay as they were."""
    cfg = _config_variant(run_copy["tmp"], "[model.transformer]\n", "[model.transformer]\nattention_dropout = 0.0\n")
    path = run_copy["out"] / "config.json"
    old = _as_made_before(path, "attention_dropout", models=("transformer",))
    proc = run_cli(*_base(run_copy["out"], cfg, run_copy["data"], run_copy["cache"], models="transformer"), timeout=300)
    assert proc.returncode == 0, proc.stderr
    stored = json.loads(path.read_text())
    assert stored["model"]["transformer"]["attention_dropout"] == 0.0 and "transformer" in stored["models"]
    assert stored["model"]["rnn"] == old["model"]["rnn"]


def test_a_late_model_key_set_since_is_refused_where_the_model_has_units(run_copy):
    """A folder made before a model key existed reads it as its default: resuming under the default
    works, while new seeds under a changed value would mix two recipes in one model and are refused."""
    stored = _as_made_before(run_copy["out"] / "config.json", "attention_dropout", "embed_dropout")
    del stored["data"]["val_groups"]  # a late data key, likewise
    (run_copy["out"] / "config.json").write_text(json.dumps(stored))
    same = run_cli(*_base(run_copy["out"], run_copy["config"], run_copy["data"], run_copy["cache"]), timeout=300)
    assert same.returncode == 0 and "already finished, skipped" in same.stderr, same.stderr
    cfg = _config_variant(run_copy["tmp"], "[model.rnn]\n", "[model.rnn]\nembed_dropout = 0.1\n")
    before = snapshot(run_copy["out"])
    proc = run_cli(*_base(run_copy["out"], cfg, run_copy["data"], run_copy["cache"], seeds="5"), timeout=300)
    one_line_refusal(proc, "'model.rnn.embed_dropout' differs", only=False)
    assert snapshot(run_copy["out"]) == before


def test_environment_json_keeps_every_invocation_that_ran_units(run_copy):
    path = run_copy["out"] / "environment.json"
    assert [i["units_run"] for i in json.loads(path.read_text())["invocations"]] == [4]
    proc = run_cli(*_base(run_copy["out"], run_copy["config"], run_copy["data"], run_copy["cache"], seeds="2"),
                   timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert [i["units_run"] for i in json.loads(path.read_text())["invocations"]] == [4, 1]


def test_the_same_data_spelled_differently_resumes(run_copy):
    relative = Path(os.path.relpath(run_copy["data"], REPO))  # the first run named it by its absolute path
    proc = run_cli(*_base(run_copy["out"], run_copy["config"], relative, run_copy["cache"]), timeout=300)
    assert proc.returncode == 0 and "already finished, skipped" in proc.stderr, proc.stderr


# ----------------------------------------------------------------------------- 1. a diverged unit

def test_a_diverged_unit_is_listed_and_the_folder_keeps_working(tmp_path, keyword_dir):
    cfg = _config_variant(tmp_path, "[model.rnn]\n", "[model.rnn]\nlr = 1e30\n")
    out = tmp_path / "out"
    args = _base(out, cfg, keyword_dir, tmp_path / "cache", models="rnn,attn_rnn", seeds="0,1")
    proc = run_cli(*args, timeout=300)
    assert proc.returncode == 0, proc.stderr
    runs = pd.read_csv(out / "runs.csv")
    failed = runs[runs["status"] == "failed"]
    assert set(failed["model"]) == {"rnn"} and failed["params"].isna().all()
    report = (out / "REPORT.md").read_text()
    assert "failed: rnn seed 0" in report and "failed: rnn seed 1" in report
    again = run_cli(*args, timeout=300)  # the folder is not broken
    assert again.returncode == 0, again.stderr
    for module in ("bench.report", "bench.compare"):
        proc = run_cli(str(out), module=module)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr


# ----------------------------------------------------------------------------- 3. damaged runs.csv

def _cut_row(out: Path) -> None:
    text = (out / "runs.csv").read_text().splitlines(keepends=True)
    (out / "runs.csv").write_text("".join(text[:-1]) + text[-1][: len(text[-1]) // 2])


def _duplicate_rows(out: Path) -> None:
    text = (out / "runs.csv").read_text().splitlines(keepends=True)
    (out / "runs.csv").write_text("".join(text + text[1:]))


def _text_in_number(out: Path) -> None:
    runs = pd.read_csv(out / "runs.csv")
    runs["test_acc"] = runs["test_acc"].astype(object)
    runs.loc[0, "test_acc"] = "n/a"
    runs.to_csv(out / "runs.csv", index=False)


def _epochs_dropped(out: Path) -> None:
    text = (out / "epochs.csv").read_text().splitlines(keepends=True)
    (out / "epochs.csv").write_text("".join(text[:2]))


@pytest.mark.parametrize("module", ["bench.compare", "bench.report"])
@pytest.mark.parametrize("damage", [_cut_row, _duplicate_rows, _text_in_number, _epochs_dropped])
def test_a_damaged_table_is_rebuilt_from_units(run_copy, finished, module, damage):
    out = run_copy["out"]
    clean = {name: (out / name).read_bytes() for name in ("runs.csv", "epochs.csv")}
    damage(out)
    proc = run_cli(str(out), module=module)
    assert proc.returncode == 0, proc.stderr
    assert "rebuilt from the unit records" in proc.stderr
    assert {name: (out / name).read_bytes() for name in clean} == clean
    stats = pd.read_csv(out / "comparisons.csv")
    assert (stats["n"] == 2).all()  # n counts seeds, not duplicated rows
    for name in ("comparisons.csv", "model_summary.csv", "gap_by_epoch.csv"):  # the clean run's statistics
        assert (out / name).read_bytes() == (finished["out"] / name).read_bytes(), name


@pytest.mark.parametrize("module", ["bench.compare", "bench.report"])
@pytest.mark.parametrize("damage, message", [
    (lambda out: shutil.rmtree(out / "units"), "has no units/ folder"),
    (lambda out: (out / "units" / "stray.json").write_text("[]"), "stray.json is not a readable unit"),
    (lambda out: (out / "datasets.json").write_text("{bad"), "datasets.json is missing or unreadable"),
    (lambda out: (out / "environment.json").write_text(""), "environment.json is missing or unreadable"),
    (lambda out: (out / "config.json").write_text("[]"), "config.json does not hold a JSON object"),
    (lambda out: (out / "predictions" / "imdb__rnn__seed0.csv.gz").write_bytes(
        gzip.compress(b"row,label,pred\n1,0,1\n")[:20]), "imdb__rnn__seed0.csv.gz is unreadable"),
])
def test_an_unreadable_folder_file_is_one_line(run_copy, module, damage, message):
    if module == "bench.compare" and ("environment" in message or "datasets" in message):
        pytest.skip("bench.compare reads neither environment.json nor datasets.json")
    damage(run_copy["out"])
    before = snapshot(run_copy["tmp"])
    proc = run_cli(str(run_copy["out"]), module=module)
    one_line_refusal(proc, message)
    assert snapshot(run_copy["tmp"]) == before


# ----------------------------------------------------------------------------- 4. no writes outside --out

def test_cleanup_removes_only_the_harness_own_temporary_files(run_copy):
    out = run_copy["out"]
    foreign = [out / ".editor.swp.tmp", out / "units" / ".other-program.tmp", out / "plots" / ".x.png.123.tmp"]
    for path in foreign:
        path.write_text("not yours")
    ours = out / "units" / ".bench-tmp.imdb__rnn__seed0.json.abc123.tmp"
    ours.write_text("half a write")
    proc = run_cli(*_base(out, run_copy["config"], run_copy["data"], run_copy["cache"]), timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert all(p.read_text() == "not yours" for p in foreign) and not ours.exists()


def test_default_out_stays_under_results(tmp_path, keyword_dir):
    """The budget string names the default results folder; it must be a plain name."""
    for budget in ("../../outside", "/abs/path", "a/b"):
        cfg = _config_variant(tmp_path, 'budget = "tiny"', f'budget = "{budget}"')
        proc = run_cli("--config", str(cfg), "--data-dir", str(keyword_dir), "--device", "cpu", "--report", "none",
                       cwd=tmp_path)
        one_line_refusal(proc, "is not a safe name")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["variant.toml"]


# ----------------------------------------------------------------------------- 5. the folder lock

def test_a_second_run_on_a_locked_folder_refuses_naming_the_holder(run_copy):
    out = run_copy["out"]
    with RunFolder(out).lock(command="test holder"):
        before = snapshot(run_copy["tmp"])
        proc = run_cli(*_base(out, run_copy["config"], run_copy["data"], run_copy["cache"]), timeout=120)
        one_line_refusal(proc, f"is in use by pid {os.getpid()}")
        assert "test holder" in proc.stderr and "--wait" in proc.stderr
        assert snapshot(run_copy["tmp"]) == before
    assert not (out / LOCK_HOLDER_NAME).exists()  # the holder file goes; the empty lock file stays


def test_wait_waits_for_the_holder(run_copy):
    """The holder keeps the folder until the waiting run says it waits, then lets go: no sleep to
    race against, so a slow start (a busy machine) cannot make the run miss the holder."""
    out = run_copy["out"]
    holding, release = threading.Event(), threading.Event()

    def hold():
        with RunFolder(out).lock(command="test holder"):
            holding.set()
            release.wait(timeout=300)

    holder = threading.Thread(target=hold)
    holder.start()
    holding.wait()
    args = _base(out, run_copy["config"], run_copy["data"], run_copy["cache"], "--wait")
    proc = subprocess.Popen([sys.executable, "-m", "bench.run", *args], env=cli_env(), cwd=REPO,
                            stderr=subprocess.PIPE, text=True)
    seen = []
    for line in proc.stderr:  # until the run says it waits (or ends without saying so)
        seen.append(line)
        if "waiting (--wait)" in line:
            break
    release.set()
    holder.join()
    rest = proc.stderr.read()
    proc.wait(timeout=300)
    assert proc.returncode == 0, "".join(seen) + rest
    assert "waiting (--wait)" in seen[-1] and "already finished, skipped" in rest, "".join(seen) + rest


def test_two_runs_at_once_train_each_unit_once(tmp_path, tiny_config, keyword_dir):
    out = tmp_path / "out"
    args = _base(out, tiny_config, keyword_dir, tmp_path / "cache")
    first = subprocess.Popen([sys.executable, "-m", "bench.run", *args], env=cli_env(), cwd=REPO,
                             stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / LOCK_HOLDER_NAME).exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    second = run_cli(*args, timeout=120)
    _, first_err = first.communicate(timeout=300)
    assert first.returncode == 0, first_err
    one_line_refusal(second, "is in use by pid")
    assert len(pd.read_csv(out / "runs.csv")) == 1


# ----------------------------------------------------------------------------- 7. the report manifest

def test_a_run_outside_the_manifest_never_writes_the_manifest_report(run_copy, tmp_path):
    manifest = tmp_path / "report.toml"
    manifest.write_text('output = "REPO_REPORT.md"\nmain = "elsewhere"\n')
    args = _base(run_copy["out"], run_copy["config"], run_copy["data"], run_copy["cache"])
    i = args.index("--report")
    del args[i:i + 2]
    proc = run_cli(*args, "--manifest", str(manifest), timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "REPO_REPORT.md").exists()
    assert "not a folder of the report manifest" in proc.stderr and str(run_copy["out"] / "REPORT.md") in proc.stderr


def test_a_run_in_the_manifest_rebuilds_the_manifest_report(run_copy, tmp_path):
    out = run_copy["out"]
    manifest = tmp_path / "report.toml"
    manifest.write_text('output = "REPO_REPORT.md"\nmain = "out"\nother = ["out"]\n')
    args = _base(out, run_copy["config"], run_copy["data"], run_copy["cache"])
    i = args.index("--report")
    del args[i:i + 2]
    proc = run_cli(*args, "--manifest", str(manifest), timeout=300)
    assert proc.returncode == 0, proc.stderr
    composed = (tmp_path / "REPO_REPORT.md").read_text()
    assert "## Other run: `" in composed
    # bench.report --manifest gives the same report as the explicit command
    proc = run_cli("--manifest", str(manifest), module="bench.report")
    assert proc.returncode == 0, proc.stderr
    explicit = run_cli(str(out), "--other", str(out), "--output", str(tmp_path / "EXPLICIT.md"), module="bench.report")
    assert explicit.returncode == 0, explicit.stderr
    assert (tmp_path / "REPO_REPORT.md").read_bytes() == (tmp_path / "EXPLICIT.md").read_bytes()


@pytest.mark.parametrize("text, message", [
    ('main = "out"\n', "missing key 'output'"),
    ('output = "R.md"\nmain = "out"\nextra = "x"\n', "unknown key 'extra'"),
    ('output = "R.md"\nmain = "out"\nother = "out"\n', "'other' must be a list of paths"),
    ('output = "R.md"\nmain = "missing"\n', "is not a run folder"),
    ("output = ", "is not valid TOML"),
])
def test_a_bad_manifest_is_one_line(run_copy, tmp_path, text, message):
    manifest = tmp_path / "report.toml"
    manifest.write_text(text)
    before = snapshot(tmp_path)
    proc = run_cli("--manifest", str(manifest), module="bench.report")
    one_line_refusal(proc, message)
    assert snapshot(tmp_path) == before


def test_the_repository_manifest_states_todays_report_command():
    from bench.report import report_command

    m = load_manifest(REPO / "configs" / "report.toml")
    rel = lambda p: p.relative_to(REPO) if p.is_absolute() else p  # noqa: E731
    tuned = [TunedRun(rel(t.run), t.untuned and rel(t.untuned)) for t in m.tuned]
    recipes = [RecipePair(rel(r.run), rel(r.baseline), r.models) for r in m.recipe]
    cmd = report_command(rel(m.main), tuned, m.ablation and rel(m.ablation),
                         [rel(o) for o in m.other], [rel(v) for v in m.variance], recipes)
    assert cmd.split()[3:] and set(cmd.split(" --")) == set(
        "python -m bench.report results/quick --other results/full-imdb-strong --other results/full-imdb-bigru "
        "--ablation results/ablation --other "
        "results/full-ag --other results/quick-tuned --other results/full-imdb --tuned-pair results/full-ag-tuned "
        "results/full-ag --tuned results/quick-ag-tuned --tuned results/quick-ag-banded --tuned results/quick-ag-banded-wide --tuned results/quick-ag-banded-varied --tuned results/quick-imdb-tuned --tuned results/quick-imdb-lr "
        "--tuned-pair results/full-imdb-cuda-tuned results/full-imdb-cuda --other results/full-imdb-cuda-valacc "
        "--variance results/variance-init --variance results/variance-order --variance "
        "results/variance-split --recipe-pair results/full-ag-attn-dropout0 results/full-ag --recipe-pair "
        "results/full-imdb-strong results/full-imdb --recipe-pair results/quick-transformer-recipe results/quick "
        "--recipe-pair results/full-imdb-bigru results/full-imdb-strong --other results/full-imdb-cuda "
        "--recipe-pair results/full-imdb-cuda results/full-imdb-bigru --recipe-pair results/full-imdb-cuda "
        "results/full-imdb-strong transformer --recipe-pair results/full-imdb-cuda-valacc results/full-imdb-cuda "
        "--recipe-pair results/full-imdb-bigru-valacc results/full-imdb-bigru --recipe-pair "
        "results/full-imdb-cuda-pad64 results/full-imdb-cuda transformer --recipe-pair results/quick-imdb-lr "
        "results/quick-imdb-tuned transformer --recipe-pair results/quick-ag-banded-wide results/quick-ag-banded rnn attn_rnn transformer --recipe-pair "
        "results/quick-ag-banded-varied results/quick-ag-banded-wide rnn attn_rnn transformer --other "
        "results/quick-imdb-movie-val --recipe-pair results/quick-imdb-movie-val results/quick --tuned-pair "
        "results/quick-imdb-movie-val-tuned results/quick-imdb-movie-val --other results/quick-imdb-head-tail "
        "--recipe-pair results/quick-imdb-head-tail results/quick --other results/full-imdb-bigru-tail "
        "--recipe-pair results/full-imdb-bigru-tail results/full-imdb-bigru --other results/quick-imdb-head-tail-init "
        "--recipe-pair results/quick-imdb-head-tail-init results/quick-imdb-head-tail transformer --other "
        "results/full-imdb-transformer-init --recipe-pair results/full-imdb-transformer-init results/full-imdb-cuda "
        "transformer --other results/full-imdb-transformer-tail --recipe-pair results/full-imdb-transformer-tail "
        "results/full-imdb-transformer-init transformer --recipe-pair results/full-imdb-transformer-tail "
        "results/full-ag-attn-dropout0 transformer --other results/quick-ag-init --recipe-pair results/quick-ag-init "
        "results/quick transformer --other results/quick-ag-init-gru --recipe-pair results/quick-ag-init-gru results/quick "
        "rnn attn_rnn --other results/quick-imdb-head-tail-init-gru --recipe-pair results/quick-imdb-head-tail-init-gru "
        "results/quick-imdb-head-tail rnn attn_rnn --other results/quick-imdb-init-movie-val --recipe-pair "
        "results/quick-imdb-init-movie-val results/quick-imdb-head-tail-init transformer --tuned-pair "
        "results/quick-imdb-init-tuned results/quick-imdb-init-movie-val --other results/full-imdb-transformer-quick-tuned "
        "--recipe-pair results/full-imdb-transformer-quick-tuned results/full-imdb-transformer-tail transformer "
        "--other results/full-imdb-transformer-gpu-base --tuned-pair results/full-imdb-transformer-gpu-tuned "
        "results/full-imdb-transformer-gpu-base --recipe-pair results/full-imdb-transformer-gpu-base "
        "results/full-imdb-transformer-quick-tuned transformer".split(" --"))
    assert [str(rel(o)) for o in m.other] == ["results/full-imdb-strong", "results/full-imdb-bigru",
                                              "results/full-imdb-cuda", "results/full-imdb-cuda-valacc",
                                              "results/full-ag",
                                              "results/quick-tuned", "results/full-imdb", "results/quick-imdb-movie-val",
                                              "results/quick-imdb-head-tail", "results/full-imdb-bigru-tail",
                                              "results/quick-imdb-head-tail-init", "results/full-imdb-transformer-init",
                                              "results/full-imdb-transformer-tail", "results/quick-ag-init",
                                              "results/quick-ag-init-gru", "results/quick-imdb-head-tail-init-gru",
                                              "results/quick-imdb-init-movie-val", "results/full-imdb-transformer-quick-tuned",
                                              "results/full-imdb-transformer-gpu-base"]
    assert rel(m.output) == Path("REPORT.md")


# ----------------------------------------------------------------------------- 6. bench.speed and bench.tune

@pytest.mark.parametrize("extra, message", [
    (["--threads", "-1"], "thread count must be >= 0"),
    (["--matmul-size", "1000000"], "--matmul-size must be at most"),
    (["--batches", "10000000"], "--batches must be at most"),
    (["--repeats", "0"], "--repeats must be at least 1"),
    (["--max-length", "100000"], "--max-length must be at most"),
    (["--out", "{tmp}"], "is a folder"),
    (["--out", "{tmp}/afile/speed.csv"], "lies below"),
    (["--out", ""], "--out is empty"),
])
def test_bad_speed_options_are_one_line_before_any_work(tmp_path, extra, message):
    (tmp_path / "afile").write_text("x")
    before = snapshot(tmp_path)
    proc = run_cli(*[e.format(tmp=tmp_path) for e in extra], module="bench.speed", timeout=60)
    one_line_refusal(proc, message)
    assert snapshot(tmp_path) == before


TUNE_SEARCH = """
[settings]
trials = 50
epochs = 2
heartbeat_s = 1
grace_s = 3

[rnn]
lr = {type = "float", low = 1e-3, high = 1e-2, log = true}
"""


@pytest.mark.parametrize("sig, code, word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
def test_tune_stops_cleanly_on_sigint_and_sigterm(tmp_path, tiny_config, keyword_dir, sig, code, word):
    import optuna

    search = tmp_path / "search.toml"
    search.write_text(TUNE_SEARCH)
    out = tmp_path / "tuned"
    proc = subprocess.Popen([sys.executable, "-m", "bench.tune", "--config", str(tiny_config), "--dataset", "imdb",
                             "--model", "rnn", "--search", str(search), "--out", str(out), "--data-dir",
                             str(keyword_dir), "--cache-dir", str(tmp_path / "cache")],
                            env=cli_env({"OMP_NUM_THREADS": "1"}), cwd=REPO, stderr=subprocess.PIPE, text=True,
                            preexec_fn=default_sigint)
    url = f"sqlite:///{out.resolve()}/optuna.db"
    deadline = time.monotonic() + 180
    running = False
    while time.monotonic() < deadline and proc.poll() is None and not running:
        time.sleep(0.2)
        try:
            names = optuna.study.get_all_study_names(url) if (out / "optuna.db").exists() else []
            running = any(t.state.name == "RUNNING" for n in names
                          for t in optuna.load_study(study_name=n, storage=url).trials)
        except Exception:  # the database is being created
            running = False
    assert running, "no trial started"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert "Traceback" not in err and f"{word}: finished trials are in the storage" in err.strip().splitlines()[-1], \
        err[-3000:]
    study = optuna.load_study(study_name=optuna.study.get_all_study_names(url)[0], storage=url)
    assert not [t for t in study.trials if t.state.name == "RUNNING"], err[-3000:]


def test_a_logged_error_raised_while_a_signal_was_handled_loses_its_traceback():
    """The flake the test above met once: SIGTERM landed inside an SQLite fetch, and SQLAlchemy logged the
    cursor it then could not close with a traceback whose context was the Terminated."""
    import logging

    from bench.cli import Terminated, _NoInterruptTraceback

    def record_of(raise_it) -> logging.LogRecord:
        try:
            raise_it()
        except Exception:
            return logging.LogRecord("sqlalchemy.pool", logging.ERROR, __file__, 1, "Error closing cursor", None,
                                     sys.exc_info())

    def closed_after_signal():
        try:
            raise Terminated()
        except Terminated:
            raise RuntimeError("Cannot operate on a closed database.")

    def plain_error():
        raise RuntimeError("a real failure")

    cut = record_of(closed_after_signal)
    assert _NoInterruptTraceback().filter(cut) and cut.exc_info is None  # the one line stays, no traceback
    real = record_of(plain_error)
    assert _NoInterruptTraceback().filter(real) and real.exc_info is not None  # other errors keep theirs


# ----------------------------------------------------------------------------- also: typed Optuna parameters

@pytest.mark.parametrize("params, message", [
    ({"hidden_dim": 24.5}, "'hidden_dim' must be int"),
    ({"hidden_dim": "24"}, "'hidden_dim' must be int"),
    ({"lr": float("nan")}, "'lr' must be finite"),
    ({"pooling": 3}, "'pooling' must be str"),
    ({"bidirectional": 1}, "'bidirectional' must be bool"),
    ({"epochs": 3}, "not a tunable field"),
])
def test_tuned_parameters_are_type_checked(tiny_config, params, message):
    from bench import config, search_space

    cfg = config.load(tiny_config)
    with pytest.raises(BenchError, match=message):
        search_space.apply_params(cfg, "rnn", params)
    assert search_space.apply_params(cfg, "rnn", {"hidden_dim": 32.0}).model["rnn"].hidden_dim == 32


# ----------------------------------------------------------------------------- also: a signal the garbage collector swallowed

SWALLOWED_SIGNAL = """
import os, signal, sys, time
from bench.cli import cli_main

class SignalsWhenCollected:
    def __del__(self):
        os.kill(os.getpid(), signal.{name})  # the handler runs here, inside __del__, where Python ignores exceptions
        for _ in range(1000):
            pass

def execute(args):
    SignalsWhenCollected()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        sum(range(1000))
    print("finished", flush=True)
    return 0

sys.exit(cli_main(lambda argv: None, execute, [], "stopped"))
"""


@pytest.mark.parametrize("name, code, word", [("SIGINT", 130, "interrupted"), ("SIGTERM", 143, "terminated")])
def test_a_signal_swallowed_in_a_destructor_still_stops_the_command(name, code, word):
    """Seen in CI: SIGTERM arrived while the garbage collector ran a weakref callback, the Terminated
    raised there was printed as "Exception ignored", and tuning ran all 50 trials to exit 0."""
    proc = subprocess.run([sys.executable, "-c", SWALLOWED_SIGNAL.format(name=name)], env=cli_env(), cwd=REPO,
                          capture_output=True, text=True, timeout=60, preexec_fn=default_sigint)
    assert proc.returncode == code, proc.stderr
    assert "finished" not in proc.stdout
    assert "Exception ignored" not in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == f"{word}: stopped"
