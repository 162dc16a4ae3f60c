"""Optuna tuning on tiny synthetic data: search-space validation, the parameter cap, NaN trials,
kill -9 resume on SQLite, and several workers on a real (throw-away) PostgreSQL server."""
from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import optuna
import pandas as pd
import pytest
import torch

from bench import config, search_space, tune, tuning_report
from bench.config import BenchError
from bench.results import RunFolder
from conftest import REPO, cli_env, run_cli

TINY_SEARCH = """
[settings]
trials = 5
epochs = 2
pruner = "median"
param_cap = 2_500_000
heartbeat_s = 1
grace_s = 3
max_retry = 2

[rnn]
lr = {type = "float", low = 1e-3, high = 1e-2, log = true}
hidden_dim = {type = "int", low = 16, high = 32, step = 8}
"""


@pytest.fixture
def search_file(tmp_path) -> Path:
    path = tmp_path / "search.toml"
    path.write_text(TINY_SEARCH)
    return path


def _search(text: str = TINY_SEARCH, **settings) -> search_space.SearchSpace:
    import tomllib

    raw = tomllib.loads(text)
    raw["settings"].update(settings)
    return search_space.parse_search(raw)


def _data(tiny_config, keyword_dir, tmp_path):
    from bench.data import prepare

    cfg = config.load(tiny_config)
    return cfg, prepare("imdb", cfg.data, keyword_dir, tmp_path / "cache")


def _trials(url: str) -> list[optuna.trial.FrozenTrial]:
    """The one study's trials; the engine is disposed so that polling does not pile up
    server connections (the throw-away PostgreSQL allows 60)."""
    with tune.opened_storage(url, _search().settings) as storage:
        (name,) = optuna.study.get_all_study_names(storage)
        return optuna.load_study(storage=storage, study_name=name).get_trials(deepcopy=True)


def _counted(trials) -> list:
    return [t for t in trials if tune.is_counted(t)]


def _worker_cmd(tmp_path, tiny_config, keyword_dir, search_file, storage, trials, *extra) -> list[str]:
    return [sys.executable, "-m", "bench.tune", "--storage", storage, "--dataset", "imdb", "--model", "rnn",
            "--trials", str(trials), "--config", str(tiny_config), "--search", str(search_file),
            "--data-dir", str(keyword_dir), "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "out"),
            "--device", "cpu", *extra]


def _start(cmd, log_path: Path) -> subprocess.Popen:
    log = open(log_path, "w")
    return subprocess.Popen(cmd, env=cli_env({"OMP_NUM_THREADS": "1"}), cwd=REPO, stdout=log,
                            stderr=subprocess.STDOUT)


def _poll(url: str, cond, proc: subprocess.Popen, timeout: float = 240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "worker ended before the condition was met"
        try:
            trials = _trials(url)
        except (BenchError, ValueError):  # the study does not exist yet
            trials = []
        if cond(trials):
            return trials
        time.sleep(0.1)
    raise AssertionError("timed out waiting for the study")


# ----------------------------------------------------------------------------- CLI

def test_cli_bad_input_is_one_line_exit_2(tmp_path, tiny_config, keyword_dir, search_file):
    bad = tmp_path / "bad.toml"
    bad.write_text('[rnn]\nlr = {type="float", low=1, high=0.5}\n')
    for cmd, message in [
        (_worker_cmd(tmp_path, tiny_config, keyword_dir, bad, "sqlite:///" + str(tmp_path / "x.db"), 2),
         "search key 'lr': empty range"),
        (_worker_cmd(tmp_path, tiny_config, keyword_dir, search_file, "sqlite:///x.db", 2)[:-2] + ["--model", "gru"],
         "unknown model 'gru'"),
        (_worker_cmd(tmp_path, tiny_config, keyword_dir, search_file, "nonsense", 2), "malformed storage URL"),
    ]:
        proc = run_cli(*cmd[3:], module="bench.tune")
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith("error: ") and message in proc.stderr and proc.stderr.count("\n") == 1


def test_corrupt_optuna_db_is_one_line_error(tmp_path, tiny_config, keyword_dir, search_file):
    out = tmp_path / "out"
    out.mkdir()
    (out / "optuna.db").write_bytes(b"this is not an sqlite database" * 100)
    cmd = _worker_cmd(tmp_path, tiny_config, keyword_dir, search_file, "sqlite:///" + str(out / "optuna.db"), 2)
    proc = run_cli(*cmd[3:], module="bench.tune")
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: cannot open Optuna storage") and proc.stderr.count("\n") == 1
    assert "Traceback" not in proc.stderr


# ----------------------------------------------------------------------------- objective

def test_param_floor_prunes_small_configs_before_training_and_keeps_old_study_names(tmp_path, tiny_config,
                                                                                    keyword_dir):
    cfg, data = _data(tiny_config, keyword_dir, tmp_path)
    space = TINY_SEARCH.split("[rnn]")[0] + '[rnn]\nembed_dim = {type="categorical", choices=[8, 64]}\n' \
        'lr = {type="float", low=1e-3, high=1e-2, log=true}\n'
    search = _search(space, param_floor=6000, trials=6, epochs=1, train_subset=600)
    tuned = tune.tune_model(cfg, data, "rnn", tmp_path / "run", trials=6, device=torch.device("cpu"), search=search)
    frame = pd.read_csv(tmp_path / "run" / "trials.csv")
    small = frame[frame["reason"].fillna("").str.contains("fall under the floor of 6,000")]
    assert len(small) >= 1 and (small["state"] == "PRUNED").all() and (small["epochs_run"] == 0).all()
    assert (small["params_count"] < 6000).all() and (frame.drop(small.index)["params_count"] >= 6000).all()
    assert tuned.model["rnn"].embed_dim == 64  # the small embedding is never the best: it never trains
    assert json.loads((tmp_path / "run" / "tuning.json").read_text())["imdb/rnn"]["param_floor"] == 6000
    md = tuning_report.tuning_section(tmp_path / "run", tmp_path)
    assert "floor **6,000**" in md and f"{len(small)} outside the parameter band" in md
    # a floor names a new study; no floor keeps the name studies had before the setting existed
    assert tune.study_name(cfg, "imdb", "rnn", search) != tune.study_name(cfg, "imdb", "rnn", _search(space))
    quick = config.load(config.budget_path("quick"))
    quick_search = search_space.load_search(REPO / "configs" / "search-quick.toml")
    committed = json.loads((REPO / "results" / "quick-ag-tuned" / "tuning.json").read_text())
    assert tune.study_name(quick, "ag_news", "rnn", quick_search) == committed["ag_news/rnn"]["study"]


def test_param_cap_prunes_before_training_with_reason(tmp_path, tiny_config, keyword_dir, monkeypatch):
    cfg, data = _data(tiny_config, keyword_dir, tmp_path)
    import bench.train

    real_fit, fitted_sizes = bench.train.fit, []

    def counting_fit(model, *a, **kw):
        fitted_sizes.append(sum(p.numel() for p in model.parameters()))
        return real_fit(model, *a, **kw)

    monkeypatch.setattr(bench.train, "fit", counting_fit)
    space = TINY_SEARCH.split("[rnn]")[0] + '[rnn]\nembed_dim = {type="categorical", choices=[8, 64]}\n' \
        'lr = {type="float", low=1e-3, high=1e-2, log=true}\n'
    search = _search(space, param_cap=6000, trials=6, epochs=1, train_subset=600)
    tuned = tune.tune_model(cfg, data, "rnn", tmp_path / "run", trials=6, device=torch.device("cpu"), search=search)
    frame = pd.read_csv(tmp_path / "run" / "trials.csv")
    assert len(frame) == 6
    capped = frame[frame["reason"].fillna("").str.contains("exceed the cap of 6,000")]
    assert len(capped) >= 1 and (capped["state"] == "PRUNED").all()
    assert (capped["params_count"] > 6000).all() and (capped["epochs_run"] == 0).all()
    assert len(fitted_sizes) == 6 - len(capped) and max(fitted_sizes) <= 6000  # never trained over the cap
    assert tuned.model["rnn"].embed_dim == 8 and tuned.model["rnn"].lr > 0
    assert json.loads((tmp_path / "run" / "tuning.json").read_text())["imdb/rnn"]["param_cap"] == 6000
    md = tuning_report.tuning_section(tmp_path / "run", tmp_path)
    assert "Parameter cap **6,000**" in md and f"{len(capped)} over the parameter cap" in md
    assert "a stratified subset of **600 of the 1,080** training texts" in md  # the tuning subset is stated
    assert "](run/plots/tuning_imdb_rnn.png)" in md
    assert capped["last_value"].isna().all()  # never trained: no value to count
    assert pd.read_csv(tmp_path / "run" / "expected_best.csv")["study"].nunique() == 1
    assert (tmp_path / "run" / "plots" / "tuning_imdb_rnn.png").stat().st_size > 1000
    # the best configuration can be read back from the storage alone (a seed stage after workers)
    again = tune.best_config(RunFolder(tmp_path / "run").sqlite_url(), "imdb", "rnn", cfg, search=search)
    assert again.model["rnn"] == tuned.model["rnn"]


def test_nan_trial_fails_cleanly_and_the_study_continues(tmp_path, tiny_config, keyword_dir, monkeypatch):
    cfg, data = _data(tiny_config, keyword_dir, tmp_path)
    import bench.train

    real_fit, calls = bench.train.fit, []

    def diverging_fit(*a, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise bench.train.TrainingDiverged("training loss became nan in epoch 1")
        return real_fit(*a, **kw)

    monkeypatch.setattr(bench.train, "fit", diverging_fit)
    search = _search(trials=4, epochs=1, pruner="hyperband")
    tune.tune_model(cfg, data, "rnn", tmp_path / "run", device=torch.device("cpu"), search=search)
    trials = _trials(RunFolder(tmp_path / "run").sqlite_url())
    assert [t.state.name for t in trials][:2] == ["COMPLETE", "FAIL"]
    assert len(trials) == 4 and len(_counted(trials)) == 4  # the failed trial counts; the study went on
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in trials[2:])
    assert trials[1].user_attrs["reason"] == "diverged: training loss became nan in epoch 1"
    frame = pd.read_csv(tmp_path / "run" / "trials.csv")
    assert frame.loc[1, "reason"].startswith("diverged") and frame.loc[1, "state"] == "FAIL"
    assert "1 failed" in tuning_report.tuning_section(tmp_path / "run", tmp_path)
    # a changed search space is a different study, never mixed into the old one
    other = _search(TINY_SEARCH.replace("high = 32", "high = 40"), trials=4, epochs=1)
    assert tune.study_name(cfg, "imdb", "rnn", other) != tune.study_name(cfg, "imdb", "rnn", search)


@pytest.mark.parametrize("epochs, state, epochs_run", [(2, "PRUNED", 1), (1, "COMPLETE", 1)])
def test_a_trial_is_pruned_between_epochs_but_never_after_its_last(tmp_path, tiny_config, keyword_dir, monkeypatch,
                                                                    epochs, state, epochs_run):
    """A pruner that always says prune: trials stop after epoch 1 of 2, but a trial that has run its
    last epoch keeps its value (pruning it then saves nothing and throws the value away)."""
    cfg, data = _data(tiny_config, keyword_dir, tmp_path)
    monkeypatch.setattr(optuna.trial.Trial, "should_prune", lambda self: True)
    search = _search(trials=2, epochs=epochs, train_subset=600)
    # every trial pruned: no best configuration, said in one line
    outcome = pytest.raises(BenchError, match="has no completed trial yet") if state == "PRUNED" else nullcontext()
    with outcome:
        tune.tune_model(cfg, data, "rnn", tmp_path / "run", device=torch.device("cpu"), search=search)
    frame = pd.read_csv(tmp_path / "run" / "trials.csv")
    assert list(frame["state"]) == [state] * 2 and list(frame["epochs_run"]) == [epochs_run] * 2
    assert frame["value"].notna().all() == (state == "COMPLETE")


# ----------------------------------------------------------------------------- SQLite resume

@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_a_trial_whose_worker_died_before_its_first_heartbeat_is_failed_and_retried(tmp_path):
    """Optuna never fails a RUNNING trial that has no heartbeat (its worker was killed between
    creating it and the first beat); without fail_dead_trials every later worker waits for it
    for ever (a CI run hung 600 s on exactly this)."""
    settings = _search(heartbeat_s=1, grace_s=2).settings
    url = "sqlite:///" + str(tmp_path / "optuna.db")
    with tune.opened_storage(url, settings) as storage:
        study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
        orphan = study.ask({"x": optuna.distributions.FloatDistribution(0.0, 1.0)})  # its worker "died" here

        def objective(trial):
            trial.set_user_attr("worker", "alive")
            return trial.suggest_float("x", 0.0, 1.0)

        assert tune.run_study(study, objective, n_trials=3, timeout=60, heartbeat_s=1, grace_s=2) == 3
        trials = study.get_trials()
    assert trials[orphan.number].state.name == "FAIL" and not tune.is_counted(trials[orphan.number])
    (retry,) = [t for t in trials if tune.retried_trial_number(t) == orphan.number]
    assert retry.state.name == "COMPLETE" and retry.params == orphan.params  # re-run with its parameters
    assert sum(map(tune.is_counted, trials)) == 3 and len(trials) == 4
    # a RUNNING trial that has begun (it has its worker mark) is left to Optuna's heartbeat check
    with tune.opened_storage(url, settings) as storage:
        study = optuna.load_study(storage=storage, study_name="s")
        live = study.ask()
        live.set_user_attr("worker", "alive")
        time.sleep(2.5)
        tune.fail_dead_trials(study, grace_s=2)
        assert study.get_trials()[live.number].state.name == "RUNNING"

def test_sqlite_kill_9_then_rerun_finishes_exactly_n_trials(tmp_path, tiny_config, keyword_dir, search_file):
    n = 5
    url = "sqlite:///" + str(tmp_path / "out" / "optuna.db")
    cmd = _worker_cmd(tmp_path, tiny_config, keyword_dir, search_file, url, n)
    first = _start(cmd, tmp_path / "first.log")
    try:
        _poll(url, lambda ts: len(_counted(ts)) >= 1 and any(t.state.name == "RUNNING" for t in ts), first)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    before = {t.number: (t.state.name, t.value, t.params) for t in _counted(_trials(url))}
    assert 1 <= len(before) < n
    second = _start(cmd, tmp_path / "second.log")
    assert second.wait(timeout=600) == 0, (tmp_path / "second.log").read_text()[-3000:]
    trials = _trials(url)
    counted = _counted(trials)
    assert len(counted) == n
    for t in trials:  # finished trials were kept as they were, not re-run
        if t.number in before:
            assert (t.state.name, t.value, t.params) == before[t.number]
    new = [t for t in counted if t.number not in before]
    assert len(new) == n - len(before)
    assert all(t.user_attrs["worker"].endswith(f":{second.pid}") for t in new)  # run by the rerun only
    retried = [tune.retried_trial_number(t) for t in trials]
    assert not set(before) & {r for r in retried if r is not None}
    frame = pd.read_csv(tmp_path / "out" / "trials.csv")
    assert len(frame) == len(trials) and set(frame["number"]) == {t.number for t in trials}
    # a third run has nothing left to do
    third = subprocess.run(cmd, env=cli_env({"OMP_NUM_THREADS": "1"}), cwd=REPO, capture_output=True, text=True,
                           timeout=600)
    assert third.returncode == 0 and len(_trials(url)) == len(trials)


# ----------------------------------------------------------------------------- PostgreSQL

def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    matches = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return matches[-1] if matches else None


def _unavailable(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL test cannot run in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def postgres_server():
    """A throw-away PostgreSQL server on a unix socket in a temporary folder (yields a URL prefix)."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        _unavailable("PostgreSQL binaries (initdb, pg_ctl) not found on PATH or in /usr/lib/postgresql/*/bin; "
                     "install Debian's postgresql package to run this test")
    try:
        import psycopg
    except ImportError:
        _unavailable("the psycopg driver is not installed (pip install 'psycopg[binary]')")
    as_user: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="benchpg-", dir="/tmp"))
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: run it as the postgres user
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(folder)
            _unavailable("running as root and there is no 'postgres' user to run the server")
        os.chown(folder, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    datadir = folder / "data"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    def run(*cmd):
        proc = subprocess.run([*as_user, *cmd], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"{cmd[0]} failed: {proc.stderr or proc.stdout}"

    try:
        run(initdb, "-D", str(datadir), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
        run(pg_ctl, "-D", str(datadir), "-l", str(folder / "server.log"), "-w", "-t", "60", "-o",
            f"-k {folder} -p {port} -c listen_addresses='' -c fsync=off -c max_connections=60", "start")
        yield {"host": str(folder), "port": port, "psycopg": psycopg}
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(datadir), "-m", "immediate", "-w", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def pg_url(postgres_server, request) -> str:
    """A fresh database on the throw-away server, one per test."""
    name = "t_" + request.node.name.lower().replace("[", "_").replace("]", "")[:40]
    s = postgres_server
    with s["psycopg"].connect(host=s["host"], port=s["port"], user="postgres", dbname="postgres",
                              autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql://postgres@/{name}?host={s['host']}&port={s['port']}"


def test_postgres_two_workers_share_one_study(tmp_path, tiny_config, keyword_dir, search_file, pg_url):
    n = 6
    search_file.write_text(TINY_SEARCH.replace("epochs = 2", "epochs = 3"))
    from bench.data import prepare  # warm the cache so both workers start training at once

    prepare("imdb", config.load(tiny_config).data, keyword_dir, tmp_path / "cache")
    workers = [_start(_worker_cmd(tmp_path, tiny_config, keyword_dir, search_file, pg_url, n, "--worker", str(k)),
                      tmp_path / f"worker{k}.log") for k in range(2)]
    for w in workers:
        assert w.wait(timeout=600) == 0, (tmp_path / "worker0.log").read_text()[-3000:]
    trials = _trials(pg_url)
    counted = _counted(trials)
    assert len(counted) == n
    assert len({t.number for t in trials}) == len(trials)
    assert len({json.dumps(t.params, sort_keys=True) for t in counted}) == n  # no trial run twice
    pids = {t.user_attrs["worker"].rsplit(":", 1)[1] for t in counted}
    assert pids == {str(w.pid) for w in workers}, "both workers should have finished trials"
    extra = [t for t in trials if not tune.is_counted(t)]
    assert all(t.user_attrs.get("surplus") for t in extra)  # only race losers, which never trained


def test_postgres_worker_killed_mid_trial_is_completed_by_another(tmp_path, tiny_config, keyword_dir,
                                                                  search_file, pg_url):
    n = 4
    search_file.write_text(TINY_SEARCH.replace("epochs = 2", "epochs = 5"))
    first = _start(_worker_cmd(tmp_path, tiny_config, keyword_dir, search_file, pg_url, n),
                   tmp_path / "first.log")
    mid_trial = lambda ts: any(t.state.name == "RUNNING" and t.user_attrs.get("epochs_run", 0) >= 1  # noqa: E731
                               for t in ts)
    try:
        while True:  # freeze the worker, then check: a trial may finish between a poll and the kill
            _poll(pg_url, mid_trial, first)
            first.send_signal(signal.SIGSTOP)
            time.sleep(0.3)  # let a commit already sent land before reading again
            if mid_trial(_trials(pg_url)):
                break
            first.send_signal(signal.SIGCONT)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    (stale,) = [t for t in _trials(pg_url) if t.state.name == "RUNNING"]
    second = _start(_worker_cmd(tmp_path, tiny_config, keyword_dir, search_file, pg_url, n, "--worker", "1"),
                    tmp_path / "second.log")
    assert second.wait(timeout=600) == 0, (tmp_path / "second.log").read_text()[-3000:]
    trials = _trials(pg_url)
    assert len(_counted(trials)) == n
    failed = trials[stale.number]
    assert failed.state.name == "FAIL" and "reason" not in failed.user_attrs
    (retry,) = [t for t in trials
                if tune.retried_trial_number(t) == stale.number]
    assert tune.is_counted(retry) and retry.params == stale.params
    assert retry.user_attrs["worker"].endswith(f":{second.pid}")
    frame = pd.read_csv(tmp_path / "out" / "trials.csv")
    row = frame[frame["number"] == stale.number].iloc[0]
    assert row["state"] == "FAIL" and f"retried as trial {retry.number}" in row["reason"]


def test_expected_max_matches_enumeration_of_all_draws():
    """Dodge et al.'s expected best of n trials equals the mean over every n-draw (with replacement)."""
    import itertools

    import numpy as np

    values = [0.71, 0.80, 0.80, 0.86, 0.90]
    for n in (1, 2, 3):
        maxima = [max(draw) for draw in itertools.product(values, repeat=n)]
        mean, sd = tuning_report.expected_max(values, n)
        assert mean == pytest.approx(np.mean(maxima), abs=1e-12)
        assert sd == pytest.approx(np.std(maxima), abs=1e-12)
    assert tuning_report.expected_max([0.0, 1.0], 2)[0] == pytest.approx(0.75)
    assert tuning_report.expected_max(values, 1)[0] == pytest.approx(np.mean(values))
    with pytest.raises(ValueError):
        tuning_report.expected_max([], 1)


def test_expected_best_curve_counts_pruned_trials_at_their_last_value_both_ways():
    import numpy as np

    frame = pd.DataFrame({"state": ["COMPLETE", "COMPLETE", "PRUNED", "PRUNED", "PRUNED", "FAIL"],
                          "value": [0.80, 0.86, np.nan, np.nan, np.nan, np.nan],
                          "last_value": [0.80, 0.86, 0.61, np.nan, 0.65, 0.5],  # nan: pruned by the cap, untrained
                          "reason": ["", "", "pruned by the median pruner after epoch 1 (val acc 0.61)",
                                     "5,000,000 parameters exceed the cap", "", "diverged"]})
    done, with_pruned = tuning_report.trial_values(frame)
    assert sorted(done) == [0.80, 0.86] and sorted(with_pruned) == [0.61, 0.65, 0.80, 0.86]
    old = frame.drop(columns="last_value")  # a trials.csv from before the column: read from the reason
    assert sorted(tuning_report.trial_values(old)[1]) == [0.61, 0.80, 0.86]
    curve = tuning_report.expected_best_curve(frame, "s")
    assert list(curve.columns) == tuning_report.EXPECTED_BEST_COLUMNS
    first = curve.iloc[0]
    assert first["completed_mean"] == pytest.approx(0.83) and first["with_pruned_mean"] == pytest.approx(0.73)
    assert (curve["with_pruned_mean"] <= curve["completed_mean"] + 1e-12).all()  # pruned trials pull the low end down
    md = "\n".join(tuning_report.expected_max_table(curve))
    assert "completed only" in md and "with pruned at last value" in md and "expected_best.csv" in md


def test_the_expected_best_curve_says_whether_it_has_flattened():
    def curve(completed, with_pruned):
        n = len(completed)
        return pd.DataFrame({"study": "s", "trials": tuning_report.CURVE_POINTS[:n], "completed_n": 9,
                             "completed_mean": completed, "completed_sd": 0.0, "with_pruned_n": 22,
                             "with_pruned_mean": with_pruned, "with_pruned_sd": 0.0})
    # points 1, 2, 3, 5, 8, 12, 20: from 8 (the last at or below 10) to 20
    flat = curve([0.80, 0.84, 0.85, 0.86, 0.869, 0.870, 0.871], [0.6, 0.7, 0.8, 0.85, 0.865, 0.868, 0.8674])
    assert tuning_report.flattening_words(flat) == (
        "From 8 to 20 trials the expected best rises +0.20 pp (completed only) and +0.24 pp (with pruned): "
        "**flat** (both under 0.25 pp), so more trials of this search would likely add little.")
    rising = curve([0.80, 0.84, 0.85, 0.86, 0.869, 0.870, 0.871], [0.6, 0.7, 0.8, 0.85, 0.86, 0.865, 0.8629])
    assert "+0.29 pp (with pruned): **still rising**" in tuning_report.flattening_words(rising)
    assert tuning_report.flattening_words(curve([0.8], [0.7])) == ""  # one point: nothing to say
    assert "**flat**" in "\n".join(tuning_report.expected_max_table(flat))



def test_a_studys_outlook_names_its_trials_its_curve_and_its_edges(tmp_path):
    """The arms section's one-cell account of how an arm's tuning ended."""
    folder = RunFolder(tmp_path)
    values = [0.50, 0.62, 0.55, 0.70, 0.66, 0.74, 0.60, 0.79, 0.81, 0.68, 0.85, 0.90]
    pd.DataFrame({"study": "s", "state": "COMPLETE", "value": values, "last_value": values,
                  "reason": ""}).to_csv(folder.trials_csv, index=False)
    spec = {"lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True},
            "hidden_dim": {"type": "int", "low": 16, "high": 64}}
    folder.tuning_json.write_text(json.dumps({"imdb/rnn": {"study": "s", "search_space": spec,
                                                           "best": {"params": {"lr": 0.0098, "hidden_dim": 40}}}}))
    curve = tuning_report.expected_best_curve(pd.read_csv(folder.trials_csv), "s")
    half, last, rise = tuning_report.curve_rise(curve)
    assert (half, last) == (5, 12) and rise["completed"] > tuning_report.FLAT_PP
    assert tuning_report.study_outlook(tmp_path, "imdb", "rnn") == (
        f"tuned, 12 trials; expected best **still rising** from 5 to 12 trials "
        f"({rise['completed']:+.2f} / {rise['with_pruned']:+.2f} pp); chosen lr at a range edge")
    assert tuning_report.study_outlook(tmp_path, "imdb", "attn_rnn") == ""  # not tuned here
    assert tuning_report.study_outlook(tmp_path / "none", "imdb", "rnn") == ""

def test_polling_a_postgres_study_does_not_pile_up_connections(pg_url, postgres_server):
    """CI once failed with "too many clients": every poll opened an engine and kept it."""
    with tune.opened_storage(pg_url, _search().settings) as storage:
        optuna.create_study(storage=storage, study_name="polled")
    s = postgres_server

    def clients() -> int:
        with s["psycopg"].connect(host=s["host"], port=s["port"], user="postgres", dbname="postgres") as conn:
            return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
                                ).fetchone()[0]

    before = clients()
    for _ in range(30):
        _trials(pg_url)
    assert clients() <= before


WRITER = """
import sys
from pathlib import Path
from bench import tune
run_dir, url, name = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
with tune.opened_storage(url) as storage:
    for _ in range(5):
        with tune.summary_lock(run_dir):
            tune.write_trials_csv(run_dir, storage, [name])
"""


def test_workers_finishing_together_keep_every_study_in_trials_csv(tmp_path):
    """Each worker rewrites trials.csv with its own study merged in; under the lock none is lost."""
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    names = [f"imdb-rnn-{k}" for k in range(5)]
    with tune.opened_storage(url) as storage:
        for name in names:
            study = optuna.create_study(storage=storage, study_name=name, direction="maximize")
            study.optimize(lambda t: t.suggest_float("lr", 0, 1), n_trials=2)
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), url, name], env=cli_env(), cwd=REPO)
               for name in names]
    assert [w.wait(timeout=300) for w in writers] == [0] * len(names)
    frame = pd.read_csv(tmp_path / "trials.csv")
    assert sorted(frame["study"].unique()) == names and len(frame) == 2 * len(names)


# ----------------------------------------------------------------------------- re-ranking over more seeds

def test_rerank_chooses_the_best_mean_over_seeds_not_the_luckiest_trial():
    from bench import rerank

    study = optuna.create_study(direction="maximize")
    dist = optuna.distributions.FloatDistribution(1e-3, 1e-2)
    for lr, value in ((1e-3, 0.90), (2e-3, 0.88), (3e-3, 0.70)):
        study.add_trial(optuna.trial.create_trial(params={"lr": lr}, distributions={"lr": dist}, value=value))
    assert rerank.chosen_trial(study).number == 0 and rerank.table(study) == []  # nothing asked: the plain best
    study.set_user_attr("rerank_top", 2)
    study.set_user_attr("rerank_seeds", 2)
    s0, s1 = rerank.rerank_seeds(2)
    for number, seed, value in ((0, s0, 0.84), (0, s1, 0.83), (1, s0, 0.87)):
        study.set_user_attr(f"rerank/{number}/{seed}", value)
    rows = rerank.table(study)
    assert [r["number"] for r in rows] == [0, 1] and [r["complete"] for r in rows] == [True, False]
    assert rows[0]["mean"] == pytest.approx((0.90 + 0.84 + 0.83) / 3) and rows[1]["mean"] is None
    assert rerank.chosen_trial(study).number == 0  # incomplete: the plain best still stands
    study.set_user_attr(f"rerank/1/{s1}", 0.86)
    assert rerank.table(study)[1]["mean"] == pytest.approx((0.88 + 0.87 + 0.86) / 3)
    assert rerank.chosen_trial(study).number == 1  # 0.870 on average beats the luckier trial's 0.857
    study.set_user_attr(f"rerank/1/{s1}", float("nan"))  # a diverged re-run rules its trial out
    assert rerank.table(study)[1]["mean"] is None and rerank.chosen_trial(study).number == 0


def test_rerank_resumes_splits_between_workers_and_feeds_the_seed_stage(tmp_path, tiny_config, keyword_dir,
                                                                          monkeypatch):
    from bench import rerank
    import bench.train

    cfg, data = _data(tiny_config, keyword_dir, tmp_path)
    search = _search(trials=4, epochs=1, train_subset=600)
    run, cpu = tmp_path / "run", torch.device("cpu")
    fits = []
    real_fit = bench.train.fit

    def counting_fit(model, data_, train_cfg, **kw):
        fits.append(kw["seed"])
        return real_fit(model, data_, train_cfg, **kw)

    monkeypatch.setattr(bench.train, "fit", counting_fit)
    # worker 0 of 2 runs the trials, then trains its half of the re-runs: the plain best still stands
    first = tune.tune_model(cfg, data, "rnn", run, trials=4, device=cpu, search=search, worker=0, workers=2,
                            rerank_top=2, rerank_seeds=2)
    url = RunFolder(run).sqlite_url()
    with tune.opened_storage(url, search.settings) as storage:
        study = optuna.load_study(storage=storage, study_name=tune.study_name(cfg, "imdb", "rnn", search))
        s0, s1 = rerank.rerank_seeds(2)  # items go (trial, seed) in order: worker 0 takes every other one
        assert fits[-2:] == [s0, s0] and sorted(rerank.results(study)) == sorted(
            t.number for t in rerank.candidates(study, 2))
        assert first.model["rnn"] == search_space.apply_params(cfg, "rnn", study.best_trial.params).model["rnn"]
    md = tuning_report.tuning_section(run, tmp_path)
    assert "**not complete**" in md and "**yes**" not in md and "Best trial" in md
    # worker 1 of 2 finds the trials done and trains the other half; a third call trains nothing
    fits.clear()
    second = tune.tune_model(cfg, data, "rnn", run, trials=4, device=cpu, search=search, worker=1, workers=2,
                             rerank_top=2, rerank_seeds=2)
    assert fits == [s1, s1]
    fits.clear()
    tune.tune_model(cfg, data, "rnn", run, trials=4, device=cpu, search=search, rerank_top=2, rerank_seeds=2)
    assert fits == []
    with tune.opened_storage(url, search.settings) as storage:
        study = optuna.load_study(storage=storage, study_name=tune.study_name(cfg, "imdb", "rnn", search))
        rows = rerank.table(study)
        assert len(rows) == 2 and all(r["complete"] and len(r["seed_values"]) == 2 for r in rows)
        want = max(rows, key=lambda r: (r["mean"], -r["number"]))
        assert rerank.chosen_trial(study).number == want["number"]
    # the seed stage's config (in process, or read back from the storage) is the re-ranked choice
    chosen = search_space.apply_params(cfg, "rnn", want["params"]).model["rnn"]
    assert second.model["rnn"] == chosen
    assert tune.best_config(url, "imdb", "rnn", cfg, search=search).model["rnn"] == chosen
    info = json.loads((run / "tuning.json").read_text())["imdb/rnn"]
    assert info["best"]["number"] == want["number"] and info["rerank"]["seeds"] == rerank.rerank_seeds(2)
    md = tuning_report.tuning_section(run, tmp_path)
    assert f"Chosen trial {want['number']} (re-ranked, below)" in md and "not complete" not in md
    assert f"| {want['number']} | {want['value'] * 100:.2f} |" in md and md.count("**yes**") == 1


@pytest.mark.parametrize("extra, message", [
    (["--rerank", "-1"], "--rerank must be >= 0"),
    (["--rerank", "2", "--rerank-seeds", "0"], "--rerank-seeds >= 1"),
    (["--rerank", "2", "--worker", "2", "--workers", "2"], "--worker must be below --workers (2)"),
    (["--workers", "0"], "--workers must be at least 1"),
])
def test_rerank_options_are_checked_in_one_line(tmp_path, tiny_config, keyword_dir, search_file, extra, message):
    cmd = _worker_cmd(tmp_path, tiny_config, keyword_dir, search_file, "sqlite:///" + str(tmp_path / "o.db"), 2,
                      *extra)
    proc = run_cli(*cmd[3:], module="bench.tune")
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and message in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_a_best_value_at_the_edge_of_its_range_is_flagged():
    log_range = {"type": "float", "low": 1e-4, "high": 0.1, "log": True}
    assert "near the top" in tuning_report._edge_words(0.0737, log_range)  # 95.6% of the log-range
    assert tuning_report._edge_words(0.0600, log_range) == ""  # 92.6%: inside
    assert tuning_report._edge_words(1e-3, log_range) == ""
    assert "near the bottom" in tuning_report._edge_words(128, {"type": "int", "low": 128, "high": 384, "step": 64})
    assert tuning_report._edge_words(64, {"type": "categorical", "choices": [16, 32, 64]}) == ""
    study = {"best": {"number": 3, "value": 0.8, "params": {"lr": 0.0099, "dropout": 0.2, "batch_size": 64}},
             "search_space": {"lr": {"type": "float", "low": 5e-4, "high": 1e-2, "log": True},
                              "dropout": {"type": "float", "low": 0.0, "high": 0.5},
                              "batch_size": {"type": "categorical", "choices": [16, 32, 64]}}}
    lines = tuning_report._best_lines(study)
    assert "| lr | 0.0099 | 0.0005 – 0.01 (log) — **near the top of its range** |" in lines
    assert "| dropout | 0.2 | 0 – 0.5 |" in lines
    assert "lr ended within 5% of a bound of the range searched: the best configuration may lie outside it, so a " \
           "wider range could find a better one." in lines


def test_per_trial_seeds_give_each_trial_its_own_seed_and_a_new_study(tmp_path, tiny_config, keyword_dir):
    """settings.trial_seed = "per_trial": trial n trains with PER_TRIAL_SEED0 + n (recorded in trials.csv and
    tuning.json), and the study is a new one; "fixed" keeps TRIAL_SEED and the study names of before."""
    cfg, data = _data(tiny_config, keyword_dir, tmp_path)
    varied = _search(trials=3, epochs=1, train_subset=600, trial_seed="per_trial")
    tune.tune_model(cfg, data, "rnn", tmp_path / "varied", device=torch.device("cpu"), search=varied)
    frame = pd.read_csv(tmp_path / "varied" / "trials.csv")
    assert list(frame["seed"]) == [search_space.PER_TRIAL_SEED0 + n for n in frame["number"]]
    summary = json.loads((tmp_path / "varied" / "tuning.json").read_text())["imdb/rnn"]
    assert summary["trial_seed"] == "per_trial"
    assert summary["best"]["seed"] == search_space.PER_TRIAL_SEED0 + summary["best"]["number"]
    assert "each trial trained with a seed of its own" in tuning_report.tuning_section(tmp_path / "varied", tmp_path)

    fixed = _search(trials=3, epochs=1, train_subset=600)
    tune.tune_model(cfg, data, "rnn", tmp_path / "fixed", device=torch.device("cpu"), search=fixed)
    fixed_frame = pd.read_csv(tmp_path / "fixed" / "trials.csv")
    assert (fixed_frame["seed"] == search_space.TRIAL_SEED).all()
    # same configurations (same sampler seed), different seeds: different values for at least one trial
    assert list(fixed_frame["params"]) == list(frame["params"])
    assert not fixed_frame["value"].equals(frame["value"])
    assert tune.study_name(cfg, "imdb", "rnn", varied) != tune.study_name(cfg, "imdb", "rnn", fixed)
    assert tune.study_name(cfg, "imdb", "rnn", fixed) == tune.study_name(cfg, "imdb", "rnn", _search(trials=3, epochs=1,
                                                                                                   train_subset=600))
    with pytest.raises(BenchError, match="settings.trial_seed' must be fixed or per_trial"):
        _search(trial_seed="random")


def test_a_studys_optimism_is_its_chosen_value_minus_the_seed_stage_mean_without_the_trial_itself():
    """On a committed fixed-seed folder: the seed stage's seed 0 re-runs the chosen trial, so it is left
    out of the mean the chosen value is set against; the table names the policy and the pooled mean."""
    folder = REPO / "results" / "quick-ag-banded-wide"
    rows = tuning_report.optimism_rows([folder, REPO / "results" / "quick"])  # an untuned folder adds nothing
    assert sorted(rows["model"]) == ["attn_rnn", "rnn", "transformer"] and (rows["trial_seed"] == "fixed").all()
    attn = rows[rows["model"] == "attn_rnn"].iloc[0]
    chosen = json.loads((folder / "tuning.json").read_text())["ag_news/attn_rnn"]["best"]["value"]
    runs = pd.read_csv(folder / "runs.csv")
    seeds = runs[(runs["model"] == "attn_rnn") & (runs["status"] == "ok") & (runs["seed"] != 0)]
    assert attn["n"] == 5 and attn["mean"] == pytest.approx(seeds["best_val_acc"].mean(), abs=1e-12)
    assert attn["optimism"] == pytest.approx(chosen - seeds["best_val_acc"].mean(), abs=1e-12)
    study = json.loads((folder / "tuning.json").read_text())["ag_news/attn_rnn"]["study"]
    assert attn["trials"] == (pd.read_csv(folder / "trials.csv")["study"] == study).sum()  # run, not requested
    gpu = tuning_report.optimism_rows([REPO / "results" / "full-imdb-transformer-gpu-tuned"]).iloc[0]
    assert gpu["trials"] == 31 and gpu["n"] == 12  # a time-budgeted study: 200 requested, 31 run
    md = "\n".join(tuning_report.optimism_table([folder], REPO))
    assert f"| {attn['optimism'] * 100:+.2f} |" in md
    assert f"Mean chosen − seed stage: 3 fixed-seed studies {rows['optimism'].mean() * 100:+.2f} pp" in md
    assert "so at least this" not in md
    # a study ranked on a validation split carved by movie: its reviews are not independent texts
    grouped = REPO / "results" / "quick-imdb-movie-val-tuned"
    rows = tuning_report.optimism_rows([grouped])
    assert list(rows["val_groups"]) == ["movie"] and list(rows["trial_seed"]) == ["per_trial"]
    assert "; whole movies, so at least this) |" in "\n".join(tuning_report.optimism_table([grouped], REPO))


def test_a_trial_over_several_seeds_is_worth_their_mean_and_pruned_on_the_first(tmp_path, tiny_config, keyword_dir,
                                                                                monkeypatch):
    """settings.seeds_per_trial = 2 with per-trial seeds: trial n trains with seeds 10000 + 2n and 10000 + 2n + 1,
    its value is the mean of their best-epoch validation accuracies, and only the first seed's epochs feed the
    pruner (one curve per trial, as the pruner compares trials step by step)."""
    import bench.train as train_mod

    cfg, data = _data(tiny_config, keyword_dir, tmp_path)
    fits, real_fit = [], train_mod.fit

    def recording_fit(model, data, cfg, **kw):
        result = real_fit(model, data, cfg, **kw)
        fits.append((kw["seed"], kw["on_epoch"] is not None, float(result.best.val_acc)))
        return result

    monkeypatch.setattr(train_mod, "fit", recording_fit)
    search = _search(trials=2, epochs=2, train_subset=600, trial_seed="per_trial", seeds_per_trial=2)
    tune.tune_model(cfg, data, "rnn", tmp_path / "run", device=torch.device("cpu"), search=search)
    base = search_space.PER_TRIAL_SEED0
    assert [(s, pruned) for s, pruned, _ in fits] == [(base, True), (base + 1, False), (base + 2, True),
                                                       (base + 3, False)]
    frame = pd.read_csv(tmp_path / "run" / "trials.csv")
    assert list(frame["seed"]) == [base, base + 2]
    assert list(frame["value"]) == pytest.approx([(fits[0][2] + fits[1][2]) / 2, (fits[2][2] + fits[3][2]) / 2])
    summary = json.loads((tmp_path / "run" / "tuning.json").read_text())["imdb/rnn"]
    assert summary["seeds_per_trial"] == 2 and len(summary["best"]["seeds"]) == 2
    assert "mean over 2 seeds (its own), the pruner fed by the first seed's epochs" in \
        tuning_report.tuning_section(tmp_path / "run", tmp_path)
    one = _search(trials=2, epochs=2, train_subset=600, trial_seed="per_trial")
    assert tune.study_name(cfg, "imdb", "rnn", one) != tune.study_name(cfg, "imdb", "rnn", search)
    with pytest.raises(BenchError, match="settings.seeds_per_trial' must be positive"):
        _search(seeds_per_trial=0)
