"""Units in worker processes and on a real Dask cluster give the same rows as one process."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from bench import results
from conftest import REPO, cli_env, run_cli

TIMING = ["train_seconds", "wall_seconds", "train_tokens_per_s", "epoch_seconds", "threads"]


def _args(tmp_path, name, cfg, data_dir, *extra):
    return ["--config", str(cfg), "--data-dir", str(data_dir), "--cache-dir", str(tmp_path / "cache"),
            "--out", str(tmp_path / name), "--report", "none", "--device", "cpu", "--epochs", "1",
            "--models", "rnn,attn_rnn,tfidf", *extra]


def _tables(folder):
    runs, epochs = results.RunFolder(folder).read_tables()
    return runs.drop(columns=[c for c in TIMING if c in runs]), epochs.drop(columns=[c for c in TIMING if c in epochs])


def _assert_same(a, b):
    for x, y in zip(_tables(a), _tables(b)):
        pd.testing.assert_frame_equal(x, y)


def test_jobs_2_gives_the_rows_of_jobs_1_and_records_the_invocation(tmp_path, tiny_config, keyword_dir):
    one = run_cli(*_args(tmp_path, "one", tiny_config, keyword_dir, "--jobs", "1"))
    assert one.returncode == 0, one.stderr
    two = run_cli(*_args(tmp_path, "two", tiny_config, keyword_dir, "--jobs", "2"))
    assert two.returncode == 0, two.stderr
    assert "6 units on 2 worker processes, 1 torch thread(s) each" in two.stderr
    _assert_same(tmp_path / "one", tmp_path / "two")
    for name in ("rnn", "attn_rnn"):  # per-unit files written by the workers are identical too
        a = pd.read_csv(results.RunFolder(tmp_path / "one").predictions_path("imdb", name, 1))
        b = pd.read_csv(results.RunFolder(tmp_path / "two").predictions_path("imdb", name, 1))
        pd.testing.assert_frame_equal(a, b)
    env = json.loads((tmp_path / "two" / "environment.json").read_text())
    assert env["jobs"] == 2 and env["units_run"] == 6 and env["wall_seconds"] > 0 and env["flush_denormal"] is True
    assert [i["units_run"] for i in env["invocations"]] == [6]  # one entry per invocation that ran units
    runs, _ = results.RunFolder(tmp_path / "two").read_tables()
    assert set(runs["threads"]) == {1}


@pytest.mark.parametrize("value, message", [("0", "--jobs must be at least 1"), ("x", "malformed --jobs")])
def test_bad_jobs_is_a_one_line_error(tmp_path, tiny_config, keyword_dir, value, message):
    proc = run_cli(*_args(tmp_path, "out", tiny_config, keyword_dir, "--jobs", value))
    assert proc.returncode == 2 and message in proc.stderr and proc.stderr.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_a_worker_killed_mid_unit_stops_with_one_line_and_a_rerun_finishes(tmp_path, tiny_config, keyword_dir):
    args = _args(tmp_path, "out", tiny_config, keyword_dir, "--jobs", "2", "--epochs", "2",
                 "--models", "rnn,attn_rnn,transformer")
    proc = subprocess.Popen([sys.executable, "-m", "bench.run", *args], env=cli_env(), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    workers = []
    while not workers and time.monotonic() < deadline:  # loky workers are children of the run
        out = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        workers = [int(p) for p in out if "popen_loky" in open(f"/proc/{p}/cmdline").read()]
        time.sleep(0.2)
    assert workers, "no loky worker process appeared"
    time.sleep(1.0)
    for pid in workers[:1]:
        os.kill(pid, signal.SIGKILL)
    _, stderr = proc.communicate(timeout=300)
    if proc.returncode != 0:  # the kill landed while a unit ran: one clear line, nothing half-written
        assert proc.returncode == 2, stderr
        last = stderr.strip().splitlines()[-1]
        assert last.startswith("error: a worker process died while running") and "Traceback" not in stderr
    assert not list((tmp_path / "out").rglob("*.tmp"))
    rerun = run_cli(*args)
    assert rerun.returncode == 0, rerun.stderr
    runs, _ = results.RunFolder(tmp_path / "out").read_tables()
    assert len(runs) == 6 and not runs.duplicated(["dataset", "model", "seed"]).any() and (runs["status"] == "ok").all()


@pytest.fixture(scope="module")
def dask_cluster():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                       env={"PYTHONPATH": str(REPO)})
    client = distributed.Client(cluster)
    yield cluster, client
    client.close()
    cluster.close()


def test_units_on_a_dask_cluster_give_the_local_rows(tmp_path, tiny_config, keyword_dir, dask_cluster):
    cluster, _ = dask_cluster
    local = run_cli(*_args(tmp_path, "local", tiny_config, keyword_dir))
    assert local.returncode == 0, local.stderr
    remote = run_cli(*_args(tmp_path, "dask", tiny_config, keyword_dir, "--cluster", cluster.scheduler_address))
    assert remote.returncode == 0, remote.stderr
    assert f"on Dask scheduler {cluster.scheduler_address}" in remote.stderr
    _assert_same(tmp_path / "local", tmp_path / "dask")


def test_a_dask_worker_killed_mid_unit_leaves_every_unit_exactly_once(tmp_path, tiny_config, keyword_dir,
                                                                      dask_cluster):
    cluster, client = dask_cluster
    args = _args(tmp_path, "dask", tiny_config, keyword_dir, "--cluster", cluster.scheduler_address,
                 "--epochs", "2", "--models", "rnn,attn_rnn,transformer")
    proc = subprocess.Popen([sys.executable, "-m", "bench.run", *args], env=cli_env(), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not any(client.processing().values()):
        time.sleep(0.1)  # wait until a worker is running a unit
    busy = [addr for addr, tasks in client.processing().items() if tasks]
    assert busy, "no unit started on the cluster"
    pid = client.run(os.getpid, workers=busy[:1])[busy[0]]
    os.kill(pid, signal.SIGKILL)  # the nanny restarts it; Dask reschedules its unit
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    runs, _ = results.RunFolder(tmp_path / "dask").read_tables()
    assert len(runs) == 6 and not runs.duplicated(["dataset", "model", "seed"]).any() and (runs["status"] == "ok").all()
    assert len(list((tmp_path / "dask" / "units").glob("*.json"))) == 6


def test_tune_with_jobs_runs_several_optuna_workers_on_one_study(tmp_path, tiny_config, keyword_dir):
    from test_tune import TINY_SEARCH

    search = tmp_path / "search.toml"
    search.write_text(TINY_SEARCH)
    args = _args(tmp_path, "out", tiny_config, keyword_dir, "--models", "rnn", "--seeds", "0", "--search",
                 str(search), "--jobs", "2")
    proc = run_cli(*args, "--tune", "--trials", "4")
    assert proc.returncode == 0, proc.stderr
    trials = pd.read_csv(tmp_path / "out" / "trials.csv", dtype={"worker": str})
    counted = trials[trials["state"].isin(["COMPLETE", "PRUNED"])]
    assert len(counted) == 4 and trials["worker"].nunique() == 2  # exactly the budget, two processes
    runs, _ = results.RunFolder(tmp_path / "out").read_tables()
    assert list(runs["model"]) == ["rnn"] and (runs["status"] == "ok").all()
