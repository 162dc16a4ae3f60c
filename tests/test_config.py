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
    ("[model.rnn]\n[train]\nselect_on = 'test_acc'\n", "'train.select_on' must be val_loss or val_acc, got 'test_acc'"),
    ("[model.rnn]\nlr_schedule = 'step'\n", "'model.rnn.lr_schedule' must be none, linear or cosine"),
    ("[model.rnn]\nwarmup_fraction = 1.0\n", "'model.rnn.warmup_fraction' must be in [0, 1)"),
    ("[model.rnn]\nembed_dropout = -0.1\n", "'model.rnn.embed_dropout' must be in [0, 1)"),
    ("[model.rnn]\nkind = 'transformer'\npositions = 'rope'\n", "'model.rnn.positions' must be learned or sinusoidal"),
    ("[model.rnn]\nnorm_first = 1\n", "'model.rnn.norm_first' must be bool"),
    ("[model.rnn]\nattention_dropout = 1.0\n", "'model.rnn.attention_dropout' must be in [0, 1)"),
    ("[model.rnn]\nattention_dropout = -0.5\n", "'model.rnn.attention_dropout' must be in [0, 1)"),
    ("[model.rnn]\nembed_init = 0.0\n", "'model.rnn.embed_init' must be above 0, got 0.0"),
    ("[model.rnn]\n[train]\ndecay_all = 'no'\n", "'train.decay_all' must be bool"),
    ("[model.rnn]\n[train]\npad_multiple = -16\n", "'train.pad_multiple' must be >= 0, got -16"),
    ("[model.rnn]\n[data]\nval_groups = 'author'\n", "'data.val_groups' must be one of '', 'movie', got 'author'"),
    ("[model.rnn]\n[data]\ntruncate = 'middle'\n", "'data.truncate' must be one of 'head', 'tail', 'head_tail', got 'middle'"),
    ("datasets = ['imdb', 'ag_news']\n[model.rnn]\n[data]\nval_groups = 'movie'\n",
     "data.val_groups = 'movie' is known for imdb only, not 'ag_news': run that dataset from a config without it"),
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


# unit hashes of a default config, computed before `vary` and the issue-13 options existed: committed
# units carry these, so any new field must leave them unchanged at its default
PINNED_HASHES = {"rnn": "d06d5d38b27f", "transformer": "4e8023bfc2cd"}


def _default_config() -> config.Config:
    return config.from_dict({"model": {"rnn": {}, "transformer": {"kind": "transformer"}}})


def test_default_vary_keeps_old_unit_hashes_and_another_vary_changes_them():
    cfg = config.from_dict({"model": {"rnn": {}}})
    old = PINNED_HASHES["rnn"]
    assert cfg.unit_hash("rnn") == old
    cfg.vary = ["order", "init"]
    assert cfg.unit_hash("rnn") == old
    cfg.vary = ["init", "order", "split"]
    assert cfg.unit_hash("rnn") != old


def test_new_options_at_their_defaults_keep_the_pinned_unit_hashes_and_otherwise_change_them():
    cfg = _default_config()
    assert {name: cfg.unit_hash(name) for name in PINNED_HASHES} == PINNED_HASHES
    changes = [("model", "lr_schedule", "cosine"), ("model", "warmup_fraction", 0.1), ("model", "embed_dropout", 0.1),
               ("model", "norm_first", True), ("model", "positions", "sinusoidal"), ("model", "attention_dropout", 0.0),
               ("model", "embed_init", 0.02), ("train", "decay_all", False), ("train", "select_on", "val_acc"),
               ("data", "val_groups", "movie"), ("data", "truncate", "tail")]
    default = {"model": config.ModelConfig(), "train": config.TrainConfig(), "data": config.DataConfig()}
    for section, key, value in changes:
        changed = _default_config()
        target = changed.model["transformer"] if section == "model" else getattr(changed, section)
        setattr(target, key, value)
        assert changed.unit_hash("transformer") != PINNED_HASHES["transformer"], key
        setattr(target, key, getattr(default[section], key))
        assert changed.unit_hash("transformer") == PINNED_HASHES["transformer"], key  # back at the default


def test_a_models_own_schedule_wins_and_empty_or_zero_falls_back_to_train():
    train = config.TrainConfig(lr=2e-3, lr_schedule="none", warmup_fraction=0.05)
    plain = config.ModelConfig().train_config(train)
    assert (plain.lr, plain.lr_schedule, plain.warmup_fraction) == (2e-3, "none", 0.05)
    assert plain == train and plain is not train  # a copy: the shared section is never changed
    own = config.ModelConfig(kind="transformer", lr=1e-3, lr_schedule="cosine", warmup_fraction=0.1).train_config(train)
    assert (own.lr, own.lr_schedule, own.warmup_fraction) == (1e-3, "cosine", 0.1)
    assert own.batch_size == train.batch_size and train.lr_schedule == "none"
    assert config.ModelConfig(lr_schedule="none").train_config(
        config.TrainConfig(lr_schedule="linear")).lr_schedule == "none"  # "none" is a value, not a fallback
