"""Any dataset (issue 16): CSV, JSONL and parquet files, a saved DatasetDict, and a hub id (read
through the same loader from local files: no hub access here) — end to end through the CLI, with
content-keyed caches and one-line errors for bad data."""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest

from bench import config
from bench.config import BenchError, Config, DataConfig, DatasetConfig
from bench.data import CLASS_NAMES, prepare
from conftest import keyword_texts, run_cli

COLOURS = ["red", "green", "blue"]
CFG = DataConfig(vocab_size=200, max_length=48, min_frequency=1, train_eval_size=100)
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def colour_texts(n: int, seed: int) -> pd.DataFrame:
    """Three classes: label k iff the text holds the word COLOURS[k], anywhere."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        words = [f"w{k}" for k in rng.integers(0, 60, size=rng.integers(8, 30))]
        words.insert(int(rng.integers(0, len(words) + 1)), COLOURS[i % 3])
        rows.append((" ".join(words), i % 3))
    return pd.DataFrame(rows, columns=["text", "label"])


def saved_dataset_dict(path, train: pd.DataFrame, test: pd.DataFrame, validation: pd.DataFrame | None = None):
    """A DatasetDict with a ClassLabel label column, written with save_to_disk."""
    import datasets

    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=COLOURS)})
    parts = {"train": train, "test": test, **({"validation": validation} if validation is not None else {})}
    dd = datasets.DatasetDict({k: datasets.Dataset.from_pandas(v, features=features, preserve_index=False)
                               for k, v in parts.items()})
    dd.save_to_disk(str(path))
    return dd


def cli(tmp_path, cfg_path, *extra, models="attn_rnn,tfidf", seeds="0", out="out"):
    return run_cli("--config", str(cfg_path), "--device", "cpu", "--models", models, "--seeds", seeds,
                   "--epochs", "1", "--out", str(tmp_path / out), "--cache-dir", str(tmp_path / "cache"),
                   "--report", "none", *extra, env={**OFFLINE, "HF_DATASETS_CACHE": str(tmp_path / "hf")})


def spec_cfg(name: str, **spec) -> Config:
    return Config(datasets=[name], data=CFG, dataset={name: DatasetConfig(**spec)})


# ----------------------------------------------------------------------------- end to end


def test_csv_file_runs_end_to_end_with_a_carved_test_split_and_resumes(tmp_path, tiny_config):
    csv = tmp_path / "my reviews.csv"
    keyword_texts(500, 0).rename(columns={"text": "review"}).to_csv(csv, index=False)
    proc = cli(tmp_path, tiny_config, "--dataset", str(csv), "--text-column", "review")
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "out"
    assert (out / "units" / "my_reviews__attn_rnn__seed0.json").is_file()
    info = json.loads((out / "datasets.json").read_text())["my_reviews"]
    assert info["test"] == 100 and info["train"] + info["val"] == 400  # 20% carved as the test split
    assert info["label_names"] == ["0", "1"] and info["num_classes"] == 2
    stored = json.loads((out / "config.json").read_text())
    assert stored["datasets"] == ["my_reviews"]
    assert stored["dataset"]["my_reviews"]["text_column"] == "review"
    assert stored["dataset"]["my_reviews"]["source"] == str(csv.resolve())
    report = (out / "REPORT.md").read_text()
    assert "my_reviews" in report and "attention" in report.lower()
    again = cli(tmp_path, tiny_config, "--dataset", str(csv), "--text-column", "review")
    assert again.returncode == 0 and "already finished" in again.stderr, again.stderr  # resumed: nothing to run
    other = cli(tmp_path, tiny_config, "--dataset", str(csv), "--text-column", "review", models="tfidf", out="out2")
    assert other.returncode == 0 and "loaded from cache" in other.stderr, other.stderr


def test_jsonl_folder_and_parquet_file_from_config_tables(tmp_path, tiny_config):
    news = tmp_path / "news"
    news.mkdir()
    names = ["sport", "politics"]
    for split, frame in (("train", keyword_texts(400, 0)), ("test", keyword_texts(100, 1))):
        frame = frame.assign(topic=[names[y] for y in frame["label"]]).rename(columns={"text": "body"})
        frame[["body", "topic"]].to_json(news / f"{split}.jsonl", orient="records", lines=True)
    pq = tmp_path / "pq_data.parquet"
    keyword_texts(400, 2).to_parquet(pq)
    cfg = tmp_path / "c.toml"
    cfg.write_text(tiny_config.read_text() + f"""
[dataset.news]
source = "{news}"
text_column = "body"
label_column = "topic"
label_names = ["sport", "politics"]
title = "News topics"

[dataset.pq]
source = "{pq}"
""")
    proc = cli(tmp_path, cfg, "--dataset", "news,pq")
    assert proc.returncode == 0, proc.stderr
    info = json.loads((tmp_path / "out" / "datasets.json").read_text())
    assert info["news"]["test"] == 100 and info["news"]["label_names"] == names
    assert info["news"]["title"] == "News topics"
    assert info["pq"]["test"] == 80  # carved: the parquet file is the train split only
    report = (tmp_path / "out" / "REPORT.md").read_text()
    assert "News topics" in report and "pq" in report


def test_saved_dataset_dict_three_classes_names_reach_the_report(tmp_path, tiny_config):
    folder = tmp_path / "colours"
    saved_dataset_dict(folder, colour_texts(450, 0), colour_texts(150, 1), validation=colour_texts(60, 2))
    proc = cli(tmp_path, tiny_config, "--dataset", str(folder), "--vary", "init,order,split", seeds="0,1")
    assert proc.returncode == 0, proc.stderr
    info = json.loads((tmp_path / "out" / "datasets.json").read_text())["colours"]
    assert info["label_names"] == COLOURS and info["num_classes"] == 3
    assert info["test"] == 150 and info["train"] + info["val"] == 450  # the shipped validation split is not used
    record = json.loads((tmp_path / "out" / "units" / "colours__attn_rnn__seed0.json").read_text())
    assert record  # the unit finished and was saved
    report = (tmp_path / "out" / "REPORT.md").read_text()
    assert any(f"| {c} |" in report for c in COLOURS)  # the attention table names the classes


def test_hub_id_runs_offline_from_a_data_dir_mirror_under_a_safe_name(tmp_path, tiny_config):
    mirror = tmp_path / "data" / "someorg--colours"  # DATA_DIR/<name>: the hub id's '/' is never in a file name
    saved_dataset_dict(mirror, colour_texts(300, 0), colour_texts(90, 1))
    proc = cli(tmp_path, tiny_config, "--dataset", "someorg/colours", "--data-dir", str(tmp_path / "data"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "units" / "someorg--colours__attn_rnn__seed0.json").is_file()
    info = json.loads((tmp_path / "out" / "datasets.json").read_text())["someorg--colours"]
    assert info["label_names"] == COLOURS and info["title"] == "someorg/colours"


# ----------------------------------------------------------------------------- the hub loader, on local data


def test_hub_dataset_goes_through_the_same_reader_and_keys_the_cache_on_its_fingerprint(tmp_path, monkeypatch):
    import datasets

    from bench import sources

    saved = saved_dataset_dict(tmp_path / "dd", colour_texts(300, 0), colour_texts(90, 1))
    calls = []

    def fake_load_dataset(path, name=None, **kw):
        calls.append((path, name))
        return saved

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    monkeypatch.setattr(sources, "_HUB", {})
    cfg = spec_cfg("org--colours", source="org/colours")
    data = prepare("org--colours", cfg, None, tmp_path / "cache")
    assert calls == [("org/colours", None)]
    assert data.num_classes == 3 and data.label_names == COLOURS and data.title == "org/colours"
    assert (len(data.train) + len(data.val), len(data.test)) == (300, 90)
    assert prepare("org--colours", cfg, None, tmp_path / "cache").cache_hit
    # another revision of the hub dataset (another fingerprint) is another cache entry
    changed = saved_dataset_dict(tmp_path / "dd2", colour_texts(300, 5), colour_texts(90, 6))
    monkeypatch.setattr(datasets, "load_dataset", lambda path, name=None, **kw: changed)
    monkeypatch.setattr(sources, "_HUB", {})
    assert not prepare("org--colours", cfg, None, tmp_path / "cache").cache_hit


# ----------------------------------------------------------------------------- content-keyed cache


def test_cache_is_keyed_on_file_content_not_path_or_time(tmp_path):
    csv = tmp_path / "a" / "d.csv"
    csv.parent.mkdir()
    keyword_texts(300, 0).to_csv(csv, index=False)
    first = prepare("d", spec_cfg("d", source=str(csv)), None, tmp_path / "cache")
    assert not first.cache_hit
    moved = tmp_path / "b" / "d.csv"  # the same bytes elsewhere, with another mtime
    moved.parent.mkdir()
    shutil.copy(csv, moved)
    os.utime(moved, (1, 1))
    assert prepare("d", spec_cfg("d", source=str(moved)), None, tmp_path / "cache").cache_hit
    # other bytes of the same size and mtime: never the stale cache
    st = csv.stat()
    text = csv.read_text()
    csv.write_text(text.replace("good", "gxxd", 1))
    os.utime(csv, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert csv.stat().st_size == st.st_size
    again = prepare("d", spec_cfg("d", source=str(csv)), None, tmp_path / "cache")
    assert not again.cache_hit


def test_builtin_cache_follows_content_and_keeps_its_format(keyword_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(keyword_dir, copy)
    for p in (copy / "imdb").iterdir():
        os.utime(p, (1, 1))
    first = prepare("imdb", CFG, keyword_dir, tmp_path / "cache")
    second = prepare("imdb", CFG, copy, tmp_path / "cache")
    assert second.cache_hit and second.label_names == CLASS_NAMES["imdb"] and second.num_classes == 2
    np.testing.assert_array_equal(first.train.ids, second.train.ids)
    (path,) = (tmp_path / "cache").glob("imdb-*.npz")
    with np.load(path) as z:
        meta = json.loads(z["meta"].tobytes().decode())
    assert set(meta) == {"tokenizer", "source"}  # a built-in dataset's cache holds what it always held


# ----------------------------------------------------------------------------- one-line errors


def _frame(texts, labels, text_col="text", label_col="label"):
    return pd.DataFrame({text_col: texts, label_col: labels})


GOOD = keyword_texts(40, 0)


@pytest.mark.parametrize("files, spec, message", [
    ({"train.csv": GOOD.rename(columns={"text": "body"})}, {}, "no column 'text' (found body, label)"),
    ({"train.parquet": _frame(["a b", "c d"] * 5, [0.5, 1.0] * 5)}, {}, "label must be an integer"),
    ({"train.csv": _frame(["a b", "c d"] * 5, ["pos", "neg"] * 5)}, {}, "string labels need label_names"),
    ({"train.csv": _frame(["a b", "c d"] * 5, ["pos", "meh"] * 5)}, {"label_names": ["neg", "pos"]},
     "label 'meh' (row 1) is not one of the label_names"),
    ({"train.csv": _frame(["a b", "c d"] * 5, [0, 2] * 5)}, {}, "labels must be contiguous 0..2, but class 1"),
    ({"train.csv": _frame(["a b", "c d"] * 5, [1, 2] * 5)}, {}, "labels must be contiguous 0..2, but class 0"),
    ({"train.csv": _frame(["a b", "c d"] * 5, [0, 0] * 5)}, {}, "only one class (0)"),
    ({"train.csv": GOOD, "test.csv": GOOD.assign(label=-1)}, {}, "hide their labels as -1"),
    ({"train.csv": GOOD, "test.parquet": GOOD.iloc[:0]}, {}, "d/test: the split is empty"),
    ({"train.csv": GOOD}, {"test_split": "validation"}, "no 'validation' split in the source (found: train)"),
    ({"test.csv": GOOD}, {}, "no 'train' split in the source (found: test)"),
    ({"train.csv": _frame(["a b", "  "] * 5, [0, 1] * 5)}, {}, "empty or non-string texts"),
    ({"notes.txt": "hello"}, {}, "no CSV, JSONL or parquet files"),
    ({"train.csv": GOOD, "train.jsonl": GOOD}, {}, "two files for split 'train'"),
    ({}, {"source": "missing.csv"}, "source not found"),
])
def test_bad_datasets_are_one_line_errors(tmp_path, files, spec, message):
    spec = dict(spec)
    folder = tmp_path / "src"
    folder.mkdir()
    for name, content in files.items():
        path = folder / name
        if isinstance(content, str):
            path.write_text(content)
        elif name.endswith(".csv"):
            content.to_csv(path, index=False)
        elif name.endswith(".jsonl"):
            content.to_json(path, orient="records", lines=True)
        else:
            content.to_parquet(path)
    source = str(tmp_path / spec.pop("source")) if "source" in spec else str(folder)
    with pytest.raises(BenchError) as err:
        prepare("d", spec_cfg("d", source=source, **spec), None, tmp_path / "cache")
    assert message in str(err.value) and "\n" not in str(err.value), str(err.value)


@pytest.mark.parametrize("table, message", [
    ("[dataset.imdb]\nsource = 'x.csv'\n", "'imdb' is built in"),
    ("[dataset.'a/b']\nsource = 'x.csv'\n", "not a safe name"),
    ("[dataset.d]\nsource = 'x.csv'\ncolour = 1\n", "unknown config key 'dataset.d.colour'"),
    ("[dataset.d]\nsource = 'x.csv'\ntest_fraction = 1.5\n", "'dataset.d.test_fraction' must be in (0, 1)"),
    ("[dataset.d]\nsource = 'x.csv'\nlabel_names = ['a']\n", "'dataset.d.label_names' must list two"),
    ("[dataset.d]\nsource = 'x.csv'\ntext_column = 'label'\n", "are both 'label'"),
    ("datasets = ['nope']\n", "unknown dataset 'nope'"),
])
def test_bad_dataset_tables_are_one_line_errors(tmp_path, tiny_config, table, message):
    path = tmp_path / "c.toml"
    text = tiny_config.read_text()
    if table.startswith("datasets"):
        text = text.replace('datasets = ["imdb"]\n', "")
    path.write_text(table + text if table.startswith("datasets") else text + table)
    with pytest.raises(BenchError) as err:
        config.load(path)
    assert message in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_dataset_options_resolve_to_safe_names(tmp_path, tiny_config):
    from bench.run import parse_args, resolve_config

    csv = tmp_path / "x.y z.csv"
    GOOD.to_csv(csv, index=False)
    cfg = resolve_config(parse_args(["--config", str(tiny_config), "--dataset", f"imdb,stanfordnlp/sst2,{csv}",
                                     "--label-column", "y"]))
    assert cfg.datasets == ["imdb", "stanfordnlp--sst2", "x_y_z"]
    assert cfg.dataset["stanfordnlp--sst2"].source == "stanfordnlp/sst2"
    assert {d.label_column for d in cfg.dataset.values()} == {"y"}
    assert "imdb" not in cfg.dataset
    with pytest.raises(BenchError, match="need a --dataset that is a file or a hub dataset"):
        resolve_config(parse_args(["--config", str(tiny_config), "--dataset", "imdb", "--text-column", "t"]))
    with pytest.raises(BenchError, match="unknown dataset 'mnist'"):
        resolve_config(parse_args(["--config", str(tiny_config), "--dataset", "mnist"]))
    # config.json round trip: the stored config reads back with the same tables
    again = config.from_json(json.loads(json.dumps(cfg.to_dict())))
    assert again.dataset == cfg.dataset and again.datasets == cfg.datasets
    assert "dataset" not in config.load(tiny_config).to_dict()  # no table: config.json as before
