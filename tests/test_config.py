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
