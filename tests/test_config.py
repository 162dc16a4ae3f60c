import dataclasses
import hashlib
import json

import pytest

from bench import config
from bench.config import BenchError


@pytest.mark.parametrize("budget", ["quick", "full"])
def test_shipped_budgets_are_valid(budget):
    cfg = config.load(config.budget_path(budget))
    assert cfg.budget == budget
    assert set(cfg.models) == {"rnn", "attn_rnn", "transformer", "tfidf"}
    assert cfg.model["rnn"].pooling == "last" and cfg.model["attn_rnn"].pooling == "attention"


BASE = "models = ['rnn']\n"


@pytest.mark.parametrize("text, message", [
    ("[model.rnn]\n[data]\nvocab_sise = 10\n", "unknown config key 'data.vocab_sise'"),
    ("bogus = 1\n[model.rnn]\n", "unknown config key 'bogus'"),
    ("[model.rnn]\n[train]\nepochs = 'three'\n", "'train.epochs' must be int"),
    ("[model.rnn]\n[train]\nepochs = true\n", "'train.epochs' must be int"),
    ("seeds = 3\n[model.rnn]\n", "'seeds' must be a list"),
    ("seeds = []\n[model.rnn]\n", "'seeds' must list at least one seed"),
    ("[model.rnn]\n[data]\nmax_length = -5\n", "'data.max_length' must be positive"),
    ("[model.rnn]\ndropout = 1.0\n", "'model.rnn.dropout' must be in [0, 1)"),
    ("[model.rnn]\nkind = 'transformer'\nembed_dim = 30\nheads = 4\npooling = 'mean'\n",
     "'model.rnn.heads' (4) must divide"),
    ("[model.rnn]\npooling = 'sum'\n", "'model.rnn.pooling'"),
    ("[model.rnn]\ncell = 'rnn'\n", "'model.rnn.cell'"),
    ("[model.rnn]\nhidden_dim = 0\n", "'model.rnn.hidden_dim' must be positive"),
    ("[model.rnn]\nlayers = 1.5\n", "'model.rnn.layers' must be int"),
    ("datasets = ['mnist']\n[model.rnn]\n", "unknown dataset 'mnist'"),
    ("[model.rnn]\n[train]\nlr_schedule = 'step'\n", "'train.lr_schedule'"),
    ("x = [\n", "not valid TOML"),
])
def test_invalid_configs_name_the_key(tmp_path, text, message):
    path = tmp_path / "c.toml"
    path.write_text(BASE + text)
    with pytest.raises(BenchError) as err:
        config.load(path)
    assert message in str(err.value)


def test_model_named_in_list_needs_a_section(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("models = ['rnn', 'nope']\n[model.rnn]\n")
    with pytest.raises(BenchError, match=r"model 'nope' has no \[model.nope\] section"):
        config.load(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(BenchError, match="config file not found"):
        config.load(tmp_path / "nope.toml")


def test_int_is_accepted_for_float_and_unit_hash_tracks_settings(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("models = ['rnn']\n[train]\nlr = 1\n[model.rnn]\n")
    cfg = config.load(path)
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
    h = cfg.unit_hash("rnn")
    cfg.model["rnn"].hidden_dim += 1
    assert cfg.unit_hash("rnn") != h


def test_defaults_are_resolved_when_loaded_and_validation_changes_nothing():
    import copy

    cfg = config.from_dict({"model": {"t": {"kind": "transformer"}, "r": {"kind": "rnn"}, "f": {"kind": "tfidf"}},
                            "models": ["t", "r", "f"]})
    assert [cfg.model[m].pooling for m in ("t", "r", "f")] == ["mean", "last", "last"]
    before = copy.deepcopy(cfg)
    assert config.validate(cfg) is cfg and cfg == before
    assert config.ModelConfig(kind="transformer").pooling == "mean"
    assert config.ModelConfig(kind="rnn", pooling="max").pooling == "max"
    assert cfg.model["r"].learning_rate(cfg.train) == cfg.train.lr
    cfg.model["r"].lr = 1e-4
    assert cfg.model["r"].learning_rate(cfg.train) == 1e-4


# ---------------------------------------------------------------- the claim and the random sources

TWO = "models = ['rnn']\n[model.rnn]\n[model.attn_rnn]\npooling = 'attention'\n"


@pytest.mark.parametrize("budget", ["quick", "full", "ablation", "variance"])
def test_shipped_configs_declare_the_claim(budget):
    cfg = config.load(config.budget_path(budget))
    assert cfg.claim is not None and (cfg.claim.model_a, cfg.claim.model_b) == ("attn_rnn", "rnn")
    assert cfg.claim.metrics == {"test_acc": "higher", "gap_matched": "lower"}
    assert "accuracy" in cfg.claim.statement and "overfitting" in cfg.claim.statement


@pytest.mark.parametrize("text, message", [
    ("[claim]\nmodel_a = 'cnn'\n", "'claim.model_a' names 'cnn', which has no [model.cnn] section"),
    ("[claim]\nmodel_a = 'rnn'\n", "'claim.model_a' and 'claim.model_b' must differ"),
    ("[claim]\nmetrics = {best_val_acc = 'higher'}\n", "selected the stopping epoch"),
    ("[claim]\nmetrics = {gap_acc = 'lower'}\n", "declare gap_matched"),
    ("[claim]\nmetrics = {f1 = 'higher'}\n", "'claim.metrics.f1': unknown metric"),
    ("[claim]\nmetrics = {test_acc = 'up'}\n", "'claim.metrics.test_acc' must be \"higher\" or \"lower\""),
    ("[claim]\nmetrics = {}\n", "'claim.metrics' must name at least one metric"),
    ("[claim]\nmetrics = ['test_acc']\n", "'claim.metrics' must be a table"),
    ("[claim]\nalpha = 1.5\n", "'claim.alpha' must be in (0, 1)"),
    ("[claim]\nmodel = 'x'\n", "unknown config key 'claim.model'"),
    ("vary = ['init', 'weather']\n", "'vary' names 'weather'"),
    ("vary = []\n", "'vary' must list each"),
    ("vary = ['init', 'init']\n", "'vary' must list each"),
])
def test_invalid_claim_or_vary_names_the_key(tmp_path, text, message):
    path = tmp_path / "c.toml"
    lines = text.splitlines(keepends=True)
    top = "".join(line for line in lines if line.startswith("vary"))
    path.write_text(top + TWO + "".join(line for line in lines if not line.startswith("vary")))
    with pytest.raises(BenchError) as err:
        config.load(path)
    assert message in str(err.value)


def test_claim_round_trips_through_config_json_and_its_hash_tracks_it():
    cfg = config.load(config.budget_path("quick"))
    back = config.from_json(json.loads(json.dumps(cfg.to_dict(), sort_keys=True)))  # as config.json stores it
    assert back.claim == cfg.claim and back.claim_hash() == cfg.claim_hash()
    other = config.ClaimConfig(metrics={"test_acc": "higher"})
    assert other.hash() != cfg.claim.hash() and len(other.hash()) == 12
    assert config.from_dict({"model": {"rnn": {}}}).claim is None  # none declared: no hash, the default applies
    assert config.from_dict({"model": {"rnn": {}}}).claim_hash() is None
    assert config.from_dict({"model": {"rnn": {}}}).effective_claim() == config.ClaimConfig()


def test_unit_seeds_vary_only_the_named_sources():
    assert config.unit_seeds(["init", "order"], 7, split_seed=3) == config.UnitSeeds(init=7, order=7, split=3)
    assert config.unit_seeds(["split"], 7, split_seed=3) == config.UnitSeeds(init=0, order=0, split=7)
    assert config.unit_seeds(["order"], 7) == config.UnitSeeds(init=config.FIXED_SEED, order=7, split=0)
    cfg = config.from_dict({"model": {"rnn": {}}, "vary": ["init", "order", "split"]})
    assert cfg.unit_seeds(4) == config.UnitSeeds(4, 4, 4)


def test_default_vary_keeps_old_unit_hashes_and_another_vary_changes_them():
    cfg = config.from_dict({"model": {"rnn": {}}})
    blob = {"data": dataclasses.asdict(cfg.data), "train": dataclasses.asdict(cfg.train),
            "model": dataclasses.asdict(cfg.model["rnn"])}
    old = hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:12]  # the hash before `vary`
    assert cfg.unit_hash("rnn") == old
    cfg.vary = ["order", "init"]
    assert cfg.unit_hash("rnn") == old
    cfg.vary = ["init", "order", "split"]
    assert cfg.unit_hash("rnn") != old
