"""The speed benchmark end to end on tiny synthetic data: it runs and writes its files (no timing asserts);
its report section renders from the CSV alone, without torch."""
import subprocess
import sys

import pandas as pd
import pytest

from bench import speed, speed_report
from bench.config import BenchError
from bench.results import SPEED_COLUMNS
from conftest import REPO, cli_env, keyword_texts, run_cli, write_dataset

SPEED_CONFIG = """
budget = "tiny"
datasets = ["imdb"]
models = ["rnn", "attn_rnn", "transformer"]
seeds = [0]

[data]
vocab_size = 200
max_length = 48
min_frequency = 1
train_eval_size = 50

[train]
threads = 1
batch_size = 16
eval_batch_size = 64

[model.rnn]
kind = "rnn"
embed_dim = 16
hidden_dim = 16

[model.attn_rnn]
kind = "rnn"
embed_dim = 16
hidden_dim = 16
pooling = "attention"

[model.transformer]
kind = "transformer"
embed_dim = 16
hidden_dim = 32
heads = 2
"""


def test_speed_benchmark_writes_csv_and_section(tmp_path):
    data_dir = write_dataset(tmp_path / "data", "imdb", keyword_texts(300, 0), keyword_texts(100, 1))
    cfg = tmp_path / "speed.toml"
    cfg.write_text(SPEED_CONFIG)
    out = tmp_path / "results" / "speed.csv"
    proc = run_cli("--dataset", "imdb", "--device", "cpu", "--config", str(cfg), "--data-dir", str(data_dir),
                   "--cache-dir", str(tmp_path / "cache"), "--max-length", "40", "--batches", "3",
                   "--repeats", "2", "--matmul-size", "256", "--out", str(out), "--jobs-dataset", "imdb",
                   module="bench.speed", timeout=300)
    assert proc.returncode == 0, proc.stderr
    full = pd.read_csv(out)
    assert list(full.columns) == SPEED_COLUMNS
    units = full[full["metric"].str.startswith(("units_wall_seconds", "jobs_speedup"))]
    frame = full.drop(units.index)
    assert set(frame["model"]) == {"all", "rnn", "attn_rnn", "transformer"}
    assert (frame["device"] == "cpu").all() and (frame["max_length"] == 40).all()
    assert (frame["examples"] == 48).all()
    # the --jobs comparison: real units at the config's own length, one process vs one per core
    assert len(units) == 3 and (units["max_length"] == 48).all() and (units["repeats"] == 2).all()
    assert (units["median"] > 0).all() and "jobs_speedup_ratio" in set(units["metric"])
    for model in ("rnn", "attn_rnn", "transformer"):
        rows = frame[frame["model"] == model].set_index("metric")
        for loop in ("harness", "reference"):
            for metric in ("train_tokens_per_s", "train_samples_per_s", "eval_tokens_per_s", "peak_memory_mb"):
                row = rows.loc[f"{metric}_{loop}"]
                assert row["repeats"] == 2 and 0 < row["min"] <= row["median"] <= row["max"]
        assert rows.loc["train_tokens_per_s_ratio", "median"] > 0
        assert rows.loc["eval_over_train_harness", "median"] > 0
        assert rows.loc["train_tokens_per_s_harness_subnormal", "repeats"] == 2  # flushing off, same repeats
        assert rows.loc["flush_speedup_ratio", "median"] > 0
        assert rows.loc["padding_fraction_reference", "median"] >= rows.loc["padding_fraction_harness", "median"]
    tr = frame[frame["model"] == "transformer"].set_index("metric")
    assert tr.loc["train_gflops_per_s_harness", "median"] > 0 and tr.loc["peak_fraction_harness", "median"] > 0
    glob = frame[frame["model"] == "all"].set_index("metric")
    assert glob.loc["matmul_peak_gflops", "median"] > 0 and glob.loc["prep_cache_hit_seconds", "median"] > 0

    report_dir, plots = tmp_path / "report", tmp_path / "results" / "plots"
    report_dir.mkdir()
    text = speed_report.speed_section(out, report_dir, plots)
    assert text.startswith("## Speed") and "| transformer | **ratio** |" in text
    assert "of peak" in text and "cache hit" in text and ("met" in text or "missed" in text)
    assert "| rnn | " in text and "subnormals kept" in text and "Units in parallel (`bench.run --jobs`)" in text
    assert "indicative only" in text  # max length 40 is not the targets' 400
    assert "](../results/plots/speed.png)" in text
    assert (plots / "speed.png").stat().st_size > 1000
    first = (plots / "speed.png").read_bytes()
    assert speed_report.speed_section(out, report_dir, plots) == text  # deterministic given the CSV
    assert (plots / "speed.png").read_bytes() == first


def test_cuda_request_without_cuda_is_one_line_error(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        return
    assert speed.main(["--device", "cuda", "--out", str(tmp_path / "s.csv")]) == 2
    err = capsys.readouterr().err
    assert "CUDA is not available" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "s.csv").exists()


@pytest.mark.parametrize("option, value, message", [
    ("--max-length", "-1", "--max-length must be >= 0"),
    ("--batches", "0", "--batches must be at least 1"),
    ("--repeats", "0", "--repeats must be at least 1"),
    ("--matmul-size", "0", "--matmul-size must be at least 1"),
])
def test_bad_option_is_one_line_error_before_any_work(tmp_path, capsys, option, value, message):
    # --device cuda would fail later (without CUDA) with another message: the option check comes first
    argv = ["--device", "cuda", "--config", str(tmp_path / "missing.toml"), option, value,
            "--out", str(tmp_path / "s.csv")]
    assert speed.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "s.csv").exists()


def test_out_that_is_a_folder_is_one_line_error(tmp_path, capsys):
    assert speed.main(["--config", str(tmp_path / "missing.toml"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is a folder" in err and len(err.strip().splitlines()) == 1


def test_negative_threads_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        speed.parse_args(["--threads", "-1"])
    assert exit_info.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_speed_section_rejects_a_csv_without_the_speed_columns(tmp_path):
    bad = tmp_path / "speed.csv"
    pd.DataFrame({"model": ["rnn"], "metric": ["x"]}).to_csv(bad, index=False)
    with pytest.raises(BenchError, match="lacks columns"):
        speed_report.speed_section(bad, tmp_path, tmp_path / "plots")


def test_rendering_does_not_import_torch():
    code = ("import sys, bench.speed_report; assert 'torch' not in sys.modules; "
            "assert 'bench.speed' not in sys.modules")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=cli_env(),
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
