"""configs/search.toml: the shipped spaces are valid, every malformed entry is an error naming its
key, and a trial's parameters land in the right config section without touching the original."""
from __future__ import annotations

import pytest

from bench import config, search_space
from bench.config import BenchError


def test_shipped_search_space_is_valid_and_covers_every_model():
    s = search_space.load_search()
    assert set(s.spaces) == set(config.MODEL_NAMES)
    assert s.settings.param_cap == 2_500_000 and s.settings.pruner in search_space.PRUNERS
    for space in s.spaces.values():
        assert "lr" in space and "max_length" not in space


@pytest.mark.parametrize("table, message", [
    ('[rnn]\nembed_size = {type="int", low=8, high=16}', "unknown search key 'embed_size'"),
    ('[rnn]\nmax_length = {type="int", low=8, high=16}', "'max_length' cannot be tuned"),
    ('[rnn]\nkind = {type="categorical", choices=["rnn"]}', "'kind' cannot be tuned"),
    ('[rnn]\nlr = {type="uniform", low=0.1, high=0.2}', "search key 'lr': type must be"),
    ('[rnn]\nlr = {type="float", low=0.2, high=0.1}', "search key 'lr': empty range"),
    ('[rnn]\nlr = {type="float", low=0.0, high=0.1, log=true}', "search key 'lr': a log range"),
    ('[rnn]\nlr = {type="float", low=1e-4}', "search key 'lr': missing 'high'"),
    ('[rnn]\nlr = {type="float", low=1e-4, high=1e-2, steps=2}', "search key 'lr': unknown spec field 'steps'"),
    ('[rnn]\nlr = 0.001', "search key 'lr' must be a table"),
    ('[rnn]\nlayers = {type="float", low=1, high=2}', "search key 'layers' is a int field"),
    ('[rnn]\nlayers = {type="int", low=1, high=3, step=0}', "search key 'layers': 'step' must be"),
    ('[rnn]\nlayers = {type="categorical", choices=[]}', "search key 'layers': categorical needs"),
    ('[rnn]\nlayers = {type="categorical", choices=[1, "2"]}', "search key 'layers': choice '2'"),
    ('[rnn]\nbidirectional = {type="categorical", choices=[0, 1]}', "search key 'bidirectional': choice 0"),
    ('[rnn]', "search table '[rnn]' is empty"),
    ('[lstm]\nlr = {type="float", low=1e-4, high=1e-2}', "unknown search table '[lstm]'"),
    ('[settings]\ntrails = 3', "unknown search key 'settings.trails'"),
    ('[settings]\npruner = "asha"', "'settings.pruner' must be median or hyperband"),
    ('[settings]\nparam_cap = 0', "'settings.param_cap' must be positive"),
    ('[settings]\nparam_floor = -1', "'settings.param_floor' must be >= 0"),
    ('[settings]\nparam_cap = 1000\nparam_floor = 1000', "'settings.param_floor' (1,000) must be below"),
    ('[settings]\ntrials = 2.5', "'settings.trials' must be int"),
])
def test_search_space_errors_name_the_key(tmp_path, table, message):
    path = tmp_path / "bad.toml"
    path.write_text(table + "\n")
    with pytest.raises(BenchError) as exc:
        search_space.load_search(path)
    assert message in str(exc.value)


def test_apply_params_sets_model_and_train_fields_on_a_copy():
    cfg = config.load(config.budget_path("quick"))
    tuned = search_space.apply_params(cfg, "attn_rnn", {"lr": 3e-3, "hidden_dim": 160, "batch_size": 128,
                                                         "weight_decay": 0.05})
    assert tuned.model["attn_rnn"].lr == 3e-3 and tuned.model["attn_rnn"].hidden_dim == 160
    assert tuned.train.batch_size == 128 and tuned.train.weight_decay == 0.05
    assert tuned.model["rnn"] == cfg.model["rnn"]  # other models keep their settings
    assert cfg.model["attn_rnn"].hidden_dim != 160 and cfg.train.batch_size != 128  # the original is untouched
    with pytest.raises(BenchError, match="heads"):
        search_space.apply_params(cfg, "transformer", {"heads": 5})  # 5 does not divide the width: validated


def test_a_models_schedule_and_warmup_are_tunable_per_model(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('[transformer]\nlr_schedule = {type="categorical", choices=["none", "linear", "cosine"]}\n'
                    'warmup_fraction = {type="float", low=0.0, high=0.2}\n')
    space = search_space.load_search(path).space("transformer")
    assert space["lr_schedule"]["choices"] == ["none", "linear", "cosine"]
    assert space["warmup_fraction"]["type"] == "float"
    cfg = config.load(config.budget_path("quick"))
    tuned = search_space.apply_params(cfg, "transformer", {"lr_schedule": "cosine", "warmup_fraction": 0.1})
    assert (tuned.model["transformer"].lr_schedule, tuned.model["transformer"].warmup_fraction) == ("cosine", 0.1)
    assert tuned.train == cfg.train  # the model's own keys, not [train]: the GRUs keep the shared schedule
    resolved = tuned.model["transformer"].train_config(tuned.train)
    assert (resolved.lr_schedule, resolved.warmup_fraction) == ("cosine", 0.1)
    for bad, message in [('{type="categorical", choices=["cosine", 1]}', "choice 1 is not a valid str"),
                         ('{type="float", low=0.0, high=1.0}', "is a str field")]:
        path.write_text(f"[transformer]\nlr_schedule = {bad}\n")
        with pytest.raises(BenchError, match=message):
            search_space.load_search(path)
    with pytest.raises(BenchError, match="'model.transformer.lr_schedule' must be none, linear or cosine"):
        search_space.apply_params(cfg, "transformer", {"lr_schedule": "step"})
