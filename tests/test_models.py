import math

import pytest
import torch
import torch.nn as nn

from bench import config
from bench.config import ModelConfig
from bench.data import PAD_ID
from bench.models import (AdditivePooling, RNNClassifier, masked_max, build_model, count_parameters, embedding_dropout,
                          padding_mask)

RNN_VARIANTS = [
    dict(pooling="last"), dict(pooling="mean"), dict(pooling="max"), dict(pooling="attention"),
    dict(pooling="last", bidirectional=True), dict(pooling="attention", bidirectional=True, layers=2),
    dict(pooling="last", cell="lstm", layers=2), dict(pooling="max", cell="lstm", bidirectional=True),
]


def _batch(seed=0, vocab=50, lengths=(7, 3, 11, 1)):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor(lengths)
    ids = torch.randint(2, vocab, (len(lengths), int(lengths.max())), generator=g)
    ids[~padding_mask(lengths, ids.size(1))] = 0
    return ids, lengths


@pytest.mark.parametrize("overrides", RNN_VARIANTS + [
    dict(kind="transformer", pooling="mean", hidden_dim=32), dict(kind="transformer", pooling="cls", hidden_dim=32),
    dict(kind="transformer", pooling="cls", hidden_dim=32, norm_first=True, positions="sinusoidal"),
    dict(kind="transformer", pooling="mean", hidden_dim=32, embed_dropout=0.3), dict(pooling="last", embed_dropout=0.3),
    dict(kind="transformer", pooling="mean", hidden_dim=32, norm_first=True, attention_dropout=0.0),
    dict(kind="transformer", pooling="max", hidden_dim=32), dict(kind="transformer", pooling="attention", hidden_dim=32)])
def test_extra_padding_does_not_change_the_logits(overrides):
    torch.manual_seed(0)
    cfg = ModelConfig(**{**dict(embed_dim=16, hidden_dim=12, heads=2, dropout=0.0), **overrides})
    model = build_model(cfg, vocab_size=50, num_classes=3, max_length=40).eval()
    ids, lengths = _batch()
    padded = torch.cat([ids, torch.zeros(ids.size(0), 9, dtype=ids.dtype)], dim=1)
    with torch.no_grad():
        a, b = model(ids, lengths), model(padded, lengths)
        # each text alone (no padding at all) gives the same logits as inside the batch
        alone = torch.cat([model(ids[i:i + 1, :n], lengths[i:i + 1]) for i, n in enumerate(lengths.tolist())])
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a, alone, atol=1e-5, rtol=1e-5)


def test_attention_dropout_drops_only_the_attention_weights_and_defaults_to_dropout():
    ids, lengths = _batch()
    def two_training_passes(**overrides):
        torch.manual_seed(0)
        cfg = ModelConfig(kind="transformer", embed_dim=16, hidden_dim=32, heads=2, layers=2, **overrides)
        model = build_model(cfg, vocab_size=50, num_classes=3, max_length=40).train()
        return model, model(ids, lengths), model(ids, lengths)
    model, a, b = two_training_passes(dropout=0.0, attention_dropout=0.5)
    assert [layer.self_attn.dropout for layer in model.encoder.layers] == [0.5, 0.5]
    assert not torch.allclose(a, b)  # the attention weights alone are dropped, differently each pass
    _, a, b = two_training_passes(dropout=0.0, attention_dropout=0.0)
    torch.testing.assert_close(a, b)  # nothing random is left
    model, _, _ = two_training_passes(dropout=0.3, attention_dropout=0.0)
    assert [layer.self_attn.dropout for layer in model.encoder.layers] == [0.0, 0.0]
    assert model.encoder.layers[0].dropout1.p == 0.3  # the residual and feed-forward dropouts stay
    model, _, _ = two_training_passes(dropout=0.3)  # the default: PyTorch's, attention weights at `dropout`
    assert [layer.self_attn.dropout for layer in model.encoder.layers] == [0.3, 0.3]


def test_attention_gives_padding_zero_weight_and_sums_to_one():
    pool = AdditivePooling(8, 4)
    h = torch.randn(3, 6, 8)
    mask = padding_mask(torch.tensor([6, 2, 4]), 6)
    _, w = pool(h, mask)
    assert torch.all(w[~mask] == 0)
    torch.testing.assert_close(w.sum(1), torch.ones(3))


def test_transformer_poolings_share_every_other_initial_weight():
    """Attention pooling is built last: a Transformer draws the same encoder weights whatever it pools with,
    and its pooling adds attn_rnn's few parameters (W, bias, v)."""
    def build(pooling):
        torch.manual_seed(0)
        return build_model(ModelConfig(kind="transformer", embed_dim=16, hidden_dim=32, heads=2, attn_dim=4,
                                       pooling=pooling), vocab_size=50, num_classes=3, max_length=40)
    mean, attn, top = build("mean"), build("attention"), build("max")
    for name, weight in mean.state_dict().items():
        torch.testing.assert_close(attn.state_dict()[name], weight)
        torch.testing.assert_close(top.state_dict()[name], weight)
    assert count_parameters(attn) - count_parameters(mean) == 16 * 4 + 4 + 4
    ids, lengths = _batch()
    h = torch.randn(2, 5, 3)
    mask = padding_mask(torch.tensor([5, 2]), 5)
    assert torch.equal(masked_max(h, mask)[1], h[1, :2].max(0).values)  # padding never wins the max
    with torch.no_grad():
        assert not torch.allclose(mean.eval()(ids, lengths), top.eval()(ids, lengths))


@pytest.mark.parametrize("kind", ["rnn", "transformer"])
def test_embed_init_scales_the_embedding_draw_and_leaves_every_other_weight(kind):
    """embed_init = 0.02 is the default N(0, 1) draw times 0.02 (token table, and the Transformer's learned
    positions), padding row still zero; every other weight is the one the default draws."""
    def build(std):
        torch.manual_seed(0)
        return build_model(ModelConfig(kind=kind, embed_dim=16, hidden_dim=32, heads=2, embed_init=std),
                           vocab_size=50, num_classes=3, max_length=40)
    plain, small = build(1.0).state_dict(), build(0.02).state_dict()
    scaled = {"embed.weight", "pos.weight"} & set(plain)
    assert scaled == ({"embed.weight", "pos.weight"} if kind == "transformer" else {"embed.weight"})
    for name, weight in plain.items():
        torch.testing.assert_close(small[name], weight * 0.02 if name in scaled else weight)
    assert not small["embed.weight"][PAD_ID].any()


def test_attention_adds_only_a_few_hundred_parameters_over_the_baseline():
    quick = config.load(config.budget_path("quick"))
    base = count_parameters(RNNClassifier(20000, 2, quick.model["rnn"]))
    attn = count_parameters(RNNClassifier(20000, 2, quick.model["attn_rnn"]))
    h, a = quick.model["attn_rnn"].hidden_dim, quick.model["attn_rnn"].attn_dim
    assert attn - base == h * a + a + a  # W (h×a) + bias (a) + v (a)
    assert attn - base < 0.001 * base


@pytest.mark.parametrize("budget", ["quick", "full"])
def test_default_budgets_are_comparable_and_capped(budget):
    cfg = config.load(config.budget_path(budget))
    counts = {name: count_parameters(build_model(cfg.model[name], 20000, 2, cfg.data.max_length))
              for name in cfg.models if cfg.model[name].kind != "tfidf"}
    assert set(counts) == {"rnn", "attn_rnn", "transformer"}
    assert max(counts.values()) <= 2_500_000
    assert max(counts.values()) <= 1.25 * min(counts.values())


def test_rnn_last_pooling_reads_the_real_last_token():
    torch.manual_seed(0)
    cfg = ModelConfig(embed_dim=8, hidden_dim=6, pooling="last", dropout=0.0)
    model = RNNClassifier(30, 2, cfg).eval()
    ids, lengths = _batch(vocab=30)
    with torch.no_grad():
        h, _ = model.layers[0][0](model.embed(ids))
        pooled, weights = model.pool(h, lengths, padding_mask(lengths, ids.size(1)))
    assert weights is None  # only attention pooling has weights
    for i, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(pooled[i], h[i, n - 1])


def test_attention_weights_are_returned_by_the_forward_pass():
    torch.manual_seed(0)
    cfg = ModelConfig(embed_dim=8, hidden_dim=6, pooling="attention", dropout=0.0)
    model = RNNClassifier(30, 2, cfg).eval()
    ids, lengths = _batch(vocab=30)
    with torch.no_grad():
        logits, weights = model(ids, lengths, return_attention=True)
        torch.testing.assert_close(logits, model(ids, lengths))
    mask = padding_mask(lengths, ids.size(1))
    assert weights.shape == ids.shape and torch.all(weights[~mask] == 0)
    torch.testing.assert_close(weights.sum(1), torch.ones(len(lengths)))
    last = RNNClassifier(30, 2, ModelConfig(embed_dim=8, hidden_dim=6, pooling="last"))
    with pytest.raises(ValueError, match="no attention weights"):
        last(ids, lengths, return_attention=True)


def test_build_for_unit_seeds_and_picks_the_models_own_learning_rate():
    from bench.data import EncodedData
    from bench.models import build_for_unit

    cfg = config.load(config.budget_path("quick"))
    cfg.model["attn_rnn"].lr = 3e-3
    data = EncodedData(dataset="x", num_classes=2, vocab_size=50, max_length=16, train=None, val=None, test=None,
                       train_eval=None, tokenizer_json="", cache_hit=True, source="x")
    cfg.model["attn_rnn"].lr_schedule = "cosine"
    a, train_a = build_for_unit(cfg, "attn_rnn", data, seed=1)
    b, _ = build_for_unit(cfg, "attn_rnn", data, seed=1)
    _, train_rnn = build_for_unit(cfg, "rnn", data, seed=1)
    assert (train_a.lr, train_a.lr_schedule) == (3e-3, "cosine") and train_rnn == cfg.train
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb)  # same seed, same initialisation
    t, _ = build_for_unit(cfg, "transformer", data, seed=1)
    assert t.pos.num_embeddings == 16 + 1  # the position table is sized by the data's own max length


def test_sinusoidal_positions_have_no_parameters_and_follow_the_closed_form():
    d, max_length = 16, 40
    learned = build_model(ModelConfig(kind="transformer", embed_dim=d, heads=2), 50, 2, max_length)
    fixed = build_model(ModelConfig(kind="transformer", embed_dim=d, heads=2, positions="sinusoidal"), 50, 2, max_length)
    assert count_parameters(learned) - count_parameters(fixed) == (max_length + 1) * d
    assert not any("pos" in name for name, _ in fixed.named_parameters())
    table = fixed.positions(max_length + 1, torch.device("cpu"))
    for t in (0, 7, 40):
        for i in (0, 3, 7):  # dimension pair (2i, 2i+1)
            angle = t / 10000 ** (2 * i / d)
            assert table[t, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-5)
            assert table[t, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-5)


def test_embedding_dropout_drops_whole_word_types_in_training_only():
    torch.manual_seed(0)
    embed = nn.Embedding(30, 8, padding_idx=0)
    ids = torch.randint(1, 30, (6, 20))
    assert torch.equal(embedding_dropout(embed, ids, 0.5, training=False), embed(ids))
    torch.manual_seed(1)
    out = embedding_dropout(embed, ids, 0.5, training=True)
    plain = embed(ids)
    dropped = set()
    for word in ids.unique().tolist():
        at = ids == word
        if torch.all(out[at] == 0):
            dropped.add(word)  # zero wherever it occurs, in every text of the batch
        else:
            torch.testing.assert_close(out[at], plain[at] / 0.5)  # a survivor, scaled by 1/(1-p)
    assert 0 < len(dropped) < len(ids.unique())


def test_embedding_dropout_at_zero_is_a_plain_lookup_that_draws_no_random_numbers():
    embed = nn.Embedding(30, 8, padding_idx=0)
    ids = torch.randint(1, 30, (4, 10))
    state = torch.get_rng_state()
    out = embedding_dropout(embed, ids, 0.0, training=True)
    assert torch.equal(torch.get_rng_state(), state) and torch.equal(out, embed(ids))
    embedding_dropout(embed, ids, 0.2, training=True)
    assert not torch.equal(torch.get_rng_state(), state)  # p > 0 does draw

