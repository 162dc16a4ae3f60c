import math
from dataclasses import asdict

import pytest
import torch

from bench.config import BenchError, DataConfig, ModelConfig, TrainConfig
from bench.data import prepare
from bench.models import build_model, seed_everything
from bench.train import TrainingDiverged, evaluate, fit, param_groups, resolve_device

DATA = DataConfig(vocab_size=200, max_length=48, min_frequency=1, train_eval_size=200)
MODELS = {
    "rnn": ModelConfig(kind="rnn", embed_dim=16, hidden_dim=24, pooling="last", dropout=0.0),
    "attn_rnn": ModelConfig(kind="rnn", embed_dim=16, hidden_dim=24, pooling="attention", dropout=0.0),
    "transformer": ModelConfig(kind="transformer", embed_dim=16, hidden_dim=32, heads=2, dropout=0.0),
    # issue 13's options: pre-LN with fixed positions, and AWD-LSTM embedding dropout on both families
    "transformer_preln": ModelConfig(kind="transformer", embed_dim=16, hidden_dim=32, heads=2, dropout=0.0,
                                     norm_first=True, positions="sinusoidal", embed_dropout=0.1),
    "rnn_embed_dropout": ModelConfig(kind="rnn", embed_dim=16, hidden_dim=24, pooling="last", dropout=0.0,
                                     embed_dropout=0.1),
}


@pytest.fixture(scope="module")
def keyword_data(keyword_dir, tmp_path_factory):
    return prepare("imdb", DATA, keyword_dir, tmp_path_factory.mktemp("cache"))


def _train(data, name, epochs=6, seed=0, lr=1e-2, **train):
    seed_everything(seed)
    model = build_model(MODELS[name], data.vocab_size, data.num_classes, DATA.max_length)
    cfg = TrainConfig(epochs=epochs, batch_size=32, lr=lr, patience=epochs, **train)
    result = fit(model, data, cfg, device=torch.device("cpu"), seed=seed, desc=name)
    return model, result


@pytest.mark.parametrize("name", list(MODELS))
def test_each_model_learns_the_keyword_task(keyword_data, name):
    model, result = _train(keyword_data, name)
    test = evaluate(model, keyword_data.test, torch.device("cpu"), 128)
    assert test.acc > 0.9, f"{name} reached only {test.acc:.3f} on a task a keyword decides"
    assert result.history[-1].train_loss < result.history[0].train_loss
    row = result.history[0]
    assert math.isclose(row.gap_acc, row.train_eval_acc - row.val_acc)
    assert row.train_tokens_per_s > 0 and row.epoch_seconds > 0


def test_same_seed_same_metrics_different_seed_different(keyword_data):
    strip = lambda h: [{k: v for k, v in asdict(r).items() if k not in ("epoch_seconds", "train_tokens_per_s")}
                       for r in h]
    _, a = _train(keyword_data, "attn_rnn", epochs=2, seed=3)
    _, b = _train(keyword_data, "attn_rnn", epochs=2, seed=3)
    _, c = _train(keyword_data, "attn_rnn", epochs=2, seed=4)
    assert strip(a.history) == strip(b.history)
    assert strip(a.history) != strip(c.history)


def test_best_epoch_weights_are_restored(keyword_data):
    model, result = _train(keyword_data, "rnn", epochs=4, lr_schedule="cosine")
    best = result.best
    assert best.val_loss == min(r.val_loss for r in result.history)
    val = evaluate(model, keyword_data.val, torch.device("cpu"), 128)
    assert val.loss == pytest.approx(best.val_loss, rel=1e-6)


def test_early_stopping_stops_after_patience(keyword_data):
    seed_everything(0)
    model = build_model(MODELS["rnn"], keyword_data.vocab_size, 2, DATA.max_length)
    # lr = 0 never improves after epoch 1, so patience 1 stops at epoch 2
    result = fit(model, keyword_data, TrainConfig(epochs=5, batch_size=64, patience=1, lr=0.0),
                 device=torch.device("cpu"), seed=0)
    assert len(result.history) == 2 and result.best_epoch == 1


# validation (loss, accuracy) after each epoch: loss is lowest at epoch 2, accuracy highest at epoch 3
SCRIPTED_VAL = [(0.50, 0.80), (0.40, 0.85), (0.45, 0.88), (0.50, 0.88), (0.55, 0.86), (0.60, 0.85)]


@pytest.mark.parametrize("select_on, best_epoch, epochs_run", [("val_loss", 2, 4), ("val_acc", 3, 5)])
def test_select_on_decides_the_kept_epoch_and_the_early_stop(keyword_data, monkeypatch, select_on, best_epoch,
                                                             epochs_run):
    import bench.train as train_module
    real_evaluate, calls = train_module.evaluate, []

    def scripted(model, split, *args):
        result = real_evaluate(model, split, *args)
        if split is not keyword_data.val:
            return result
        loss, acc = SCRIPTED_VAL[len(calls)]
        calls.append(model.head.weight.detach().clone())  # the weights this epoch's score belongs to
        return train_module.EvalResult(loss, acc, result.probs)

    monkeypatch.setattr(train_module, "evaluate", scripted)
    seed_everything(0)
    model = build_model(MODELS["rnn"], keyword_data.vocab_size, 2, DATA.max_length)
    cfg = TrainConfig(epochs=6, batch_size=64, lr=1e-2, patience=2, select_on=select_on)
    result = fit(model, keyword_data, cfg, device=torch.device("cpu"), seed=0)
    # patience 2 after the best epoch; a tie (0.88 at epoch 4) is no improvement, so the earlier epoch stays
    assert (result.best_epoch, len(result.history)) == (best_epoch, epochs_run)
    assert torch.equal(model.head.weight, calls[best_epoch - 1])


def test_nan_loss_fails_the_run_with_a_reason(keyword_data):
    seed_everything(0)
    model = build_model(MODELS["rnn"], keyword_data.vocab_size, 2, DATA.max_length)
    with torch.no_grad():
        model.head.weight.fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match="loss became nan"):
        fit(model, keyword_data, TrainConfig(epochs=2, batch_size=64, grad_clip=0, lr=1e-3),
            device=torch.device("cpu"), seed=0)


def test_device_resolution():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(BenchError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(BenchError, match="CUDA is not available"):
            resolve_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_training_with_amp_learns(keyword_data):
    seed_everything(0)
    model = build_model(MODELS["attn_rnn"], keyword_data.vocab_size, 2, DATA.max_length)
    fit(model, keyword_data, TrainConfig(epochs=5, batch_size=32, lr=1e-2), device=torch.device("cuda"), seed=0)
    assert evaluate(model, keyword_data.test, torch.device("cuda"), 128).acc > 0.9


def test_order_seed_sets_the_batch_order_apart_from_the_init_seed(keyword_data):
    def losses(order_seed):
        seed_everything(0)  # the same initialisation every time
        model = build_model(MODELS["rnn"], keyword_data.vocab_size, keyword_data.num_classes, DATA.max_length)
        cfg = TrainConfig(epochs=1, batch_size=32, lr=1e-2, patience=1)
        kwargs = {} if order_seed is None else {"order_seed": order_seed}
        fitted = fit(model, keyword_data, cfg, device=torch.device("cpu"), seed=0, **kwargs)
        return fitted.history[0].train_loss

    assert losses(None) == losses(0)  # the default is the seed
    assert losses(3) != losses(0)


def test_decay_all_false_spares_biases_and_layernorm_and_decays_matrices(keyword_data, monkeypatch):
    model = build_model(MODELS["transformer"], keyword_data.vocab_size, 2, DATA.max_length)
    names = {id(p): n for n, p in model.named_parameters()}
    (one,) = param_groups(model, TrainConfig(weight_decay=0.05))  # the default: everything, in model order
    assert [id(p) for p in one["params"]] == [id(p) for p in model.parameters()] and one["weight_decay"] == 0.05
    made, adamw = [], torch.optim.AdamW  # the optimiser fit itself builds
    monkeypatch.setattr(torch.optim, "AdamW", lambda *a, **k: made.append(adamw(*a, **k)) or made[-1])
    fit(model, keyword_data, TrainConfig(epochs=1, batch_size=64, weight_decay=0.05, decay_all=False),
        device=torch.device("cpu"), seed=0)
    decay, no_decay = made[0].param_groups
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    decayed = {names[id(p)] for p in decay["params"]}
    spared = {names[id(p)] for p in no_decay["params"]}
    assert len(decayed) + len(spared) == len(names)
    assert {"embed.weight", "pos.weight", "head.weight", "encoder.layers.0.linear1.weight"} <= decayed
    assert {"head.bias", "encoder.norm.weight", "encoder.norm.bias", "encoder.layers.0.norm1.weight",
            "encoder.layers.0.linear1.bias"} <= spared
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() < 2 for p in no_decay["params"])


def test_a_models_own_schedule_drives_the_fit(keyword_data):
    """train says no schedule; the model's linear schedule (via ModelConfig.train_config) decays the lr to 0."""
    train = TrainConfig(epochs=2, batch_size=32, lr=1e-2, patience=2, lr_schedule="none")
    lrs = {}
    for schedule in ("", "linear"):
        mcfg = ModelConfig(kind="rnn", embed_dim=16, hidden_dim=24, lr_schedule=schedule, warmup_fraction=0.2)
        seed_everything(0)
        model = build_model(mcfg, keyword_data.vocab_size, 2, DATA.max_length)
        result = fit(model, keyword_data, mcfg.train_config(train), device=torch.device("cpu"), seed=0)
        lrs[schedule] = [r.lr for r in result.history]
    assert lrs[""] == [1e-2, 1e-2]  # "" falls back to train's constant lr
    assert lrs["linear"][0] < 1e-2 and lrs["linear"][-1] == 0.0


@pytest.mark.parametrize("name", ["rnn", "transformer"])
def test_pad_multiple_trains_the_same_model_up_to_float_rounding(keyword_data, name):
    """Rounding batch widths up only adds masked padding: the losses of every epoch agree."""
    _, plain = _train(keyword_data, name, epochs=2)
    _, rounded = _train(keyword_data, name, epochs=2, pad_multiple=16)
    for a, b in zip(plain.history, rounded.history, strict=True):
        assert b.train_loss == pytest.approx(a.train_loss, rel=1e-4)
        assert b.val_loss == pytest.approx(a.val_loss, rel=1e-4)
