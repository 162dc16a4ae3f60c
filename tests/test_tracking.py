"""`--track mlflow`: every unit as an MLflow run on a real tracking server, and a down server loses nothing."""
from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from bench import results
from conftest import run_cli

mlflow = pytest.importorskip("mlflow")


def _args(tmp_path, cfg, data_dir, *extra):
    return ["--config", str(cfg), "--data-dir", str(data_dir), "--cache-dir", str(tmp_path / "cache"),
            "--out", str(tmp_path / "out"), "--report", "none", "--device", "cpu", "--epochs", "2",
            "--models", "rnn,tfidf", "--seeds", "0,1", "--track", "mlflow", *extra]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` with a SQLite backend on localhost, stopped after the tests."""
    root = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    exe = shutil.which("mlflow") or sys.executable
    cmd = ([exe] if exe.endswith("mlflow") else [exe, "-m", "mlflow"]) + [
        "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
        "--default-artifact-root", (root / "artifacts").as_uri()]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=root)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(url + "/health", timeout=2).status == 200:
                break
        except OSError:
            assert proc.poll() is None, "mlflow server exited"
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("mlflow server did not start within 120 s")
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_each_unit_is_an_mlflow_run_on_a_real_server(tmp_path, tiny_config, keyword_dir, mlflow_server):
    proc = run_cli(*_args(tmp_path, tiny_config, keyword_dir, "--tracking-uri", mlflow_server))
    assert proc.returncode == 0, proc.stderr
    assert "failed" not in proc.stderr
    client = mlflow.tracking.MlflowClient(tracking_uri=mlflow_server)
    exp = client.get_experiment_by_name(str(tmp_path / "out"))
    assert exp is not None
    found = client.search_runs([exp.experiment_id])
    parents = [r for r in found if r.data.tags.get("bench.kind") == "invocation"]
    units = [r for r in found if r.data.tags.get("bench.kind") == "unit"]
    assert len(parents) == 1 and len(units) == 4
    assert {r.data.tags["mlflow.parentRunId"] for r in units} == {parents[0].info.run_id}
    rnn = next(r for r in units if r.info.run_name == "imdb/rnn/seed1")
    assert rnn.info.status == "FINISHED" and rnn.data.params["model.hidden_dim"] == "24"
    runs, _ = results.RunFolder(tmp_path / "out").read_tables()
    row = runs[(runs["model"] == "rnn") & (runs["seed"] == 1)].iloc[0]
    assert rnn.data.metrics["test_acc"] == pytest.approx(row["test_acc"])  # the CSV and the tracker agree
    history = client.get_metric_history(rnn.info.run_id, "val_acc")
    assert sorted(m.step for m in history) == [1, 2]
    assert [a.path for a in client.list_artifacts(rnn.info.run_id, "predictions")] == \
        ["predictions/imdb__rnn__seed1.csv.gz"]
    assert any(a.path == "REPORT.md" for a in client.list_artifacts(parents[0].info.run_id))


def test_a_down_tracking_server_is_one_warning_and_loses_nothing(tmp_path, tiny_config, keyword_dir):
    port = _free_port()  # nothing listens there
    proc = run_cli(*_args(tmp_path, tiny_config, keyword_dir, "--tracking-uri", f"http://127.0.0.1:{port}"))
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "tracking to" in line and "failed" in line]
    assert len(warnings) == 1 and "Traceback" not in proc.stderr
    runs, _ = results.RunFolder(tmp_path / "out").read_tables()
    assert len(runs) == 4 and (runs["status"] == "ok").all()


def test_default_store_stays_inside_out(tmp_path, tiny_config, keyword_dir):
    proc = run_cli(*_args(tmp_path, tiny_config, keyword_dir), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "out"
    assert (out / "mlflow.db").is_file() and any((out / "mlartifacts").rglob("*.csv.gz"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "out", "tiny.toml"]  # nothing beside --out
    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    exp = client.get_experiment_by_name(str(out))
    assert len(client.search_runs([exp.experiment_id], "tags.`bench.kind` = 'unit'")) == 4


def test_tracking_uri_without_track_is_a_one_line_error(tmp_path, tiny_config, keyword_dir):
    args = [a for a in _args(tmp_path, tiny_config, keyword_dir) if a not in ("--track", "mlflow")]
    proc = run_cli(*args, "--tracking-uri", "http://127.0.0.1:1")
    assert proc.returncode == 2 and proc.stderr.strip() == "error: --tracking-uri needs --track mlflow"
