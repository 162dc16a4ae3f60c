import logging

import numpy as np
import pandas as pd
import pytest

from bench.config import BenchError, DataConfig
from bench.config import cut_words, truncation_words
from bench.data import PAD_ID, UNK_ID, Split, encode, iterate_batches, keep_tokens, prepare, train_tokenizer
from conftest import SHARED_DATA, keyword_texts, write_dataset

CFG = DataConfig(vocab_size=200, max_length=48, min_frequency=1, train_eval_size=100)
IMDB_SHORTEST_TRAIN_TEXT = "This movie is terrible but it has some good effects."  # train/neg/10962_3.txt


def test_offline_parquet_load_split_and_encode(keyword_dir, tmp_path):
    data = prepare("imdb", CFG, keyword_dir, tmp_path / "cache")
    assert (len(data.train), len(data.val), len(data.test)) == (1080, 120, 400)
    assert len(data.train_eval) == 100
    # stratified: both classes equally represented in validation
    assert np.bincount(data.val.labels).tolist() == [60, 60]
    # train and validation are disjoint rows of the original train split
    assert not set(data.train.rows) & set(data.val.rows)
    assert set(data.train_eval.rows) <= set(data.train.rows)
    # padding only after each text's length, never inside it
    for split in (data.train, data.test):
        pos = np.arange(split.ids.shape[1])[None, :]
        assert (split.ids[pos >= split.lengths[:, None]] == PAD_ID).all()
        assert (split.ids[pos < split.lengths[:, None]] != PAD_ID).all()
    assert not data.cache_hit


def test_second_prepare_uses_the_cache_and_gives_identical_arrays(keyword_dir, tmp_path, caplog):
    first = prepare("imdb", CFG, keyword_dir, tmp_path / "cache")
    with caplog.at_level(logging.INFO, logger="bench"):
        second = prepare("imdb", CFG, keyword_dir, tmp_path / "cache")
    assert second.cache_hit and "loaded from cache" in caplog.text
    np.testing.assert_array_equal(first.train.ids, second.train.ids)
    np.testing.assert_array_equal(first.test.labels, second.test.labels)
    # another tokenizer setting is another cache entry
    third = prepare("imdb", DataConfig(**{**CFG.__dict__, "max_length": 20}), keyword_dir, tmp_path / "cache")
    assert not third.cache_hit and third.train.ids.shape[1] == 20


def test_truncation_keeps_the_head_the_tail_or_both_of_a_long_text():
    ids = list(range(10))
    assert keep_tokens(ids, 8, "head") == [0, 1, 2, 3, 4, 5, 6, 7]
    assert keep_tokens(ids, 8, "tail") == [2, 3, 4, 5, 6, 7, 8, 9]
    assert keep_tokens(ids, 8, "head_tail") == [0, 1, 4, 5, 6, 7, 8, 9]  # a quarter from the start, the rest from the end
    for how in ("head", "tail", "head_tail"):
        assert keep_tokens(ids[:5], 8, how) == ids[:5]  # a short text is kept whole
    tok = train_tokenizer(["a b c d e f g h i j"], DataConfig(vocab_size=50, min_frequency=1))
    words = {i: w for w, i in tok.get_vocab().items()}
    for how, kept in (("head", "a b c d e f g h"), ("tail", "c d e f g h i j"), ("head_tail", "a b e f g h i j")):
        ids, lengths = encode(tok, ["A b c d e f g h i j", "b a"], 8, how)
        assert " ".join(words[i] for i in ids[0]) == kept and lengths.tolist() == [8, 2]
        assert ids[1, :2].tolist() == [tok.token_to_id("b"), tok.token_to_id("a")] and (ids[1, 2:] == PAD_ID).all()
    assert truncation_words(DataConfig(max_length=128, truncate="head_tail")) == "the first 32 and the last 96"
    assert cut_words(DataConfig(max_length=128)) == "128 tokens"
    assert cut_words(DataConfig(max_length=128, truncate="tail")) == "128 tokens (the last 128)"


def test_a_tail_truncation_is_its_own_cache_entry_and_keeps_each_texts_last_tokens(keyword_dir, tmp_path):
    head = prepare("imdb", DataConfig(**{**CFG.__dict__, "max_length": 12}), keyword_dir, tmp_path / "cache")
    tail = prepare("imdb", DataConfig(**{**CFG.__dict__, "max_length": 12, "truncate": "tail"}), keyword_dir,
                   tmp_path / "cache")
    assert not tail.cache_hit and tail.tokenizer_json == head.tokenizer_json  # one vocabulary, other tokens kept
    whole = prepare("imdb", DataConfig(**{**CFG.__dict__, "max_length": 400}), keyword_dir, tmp_path / "cache")
    for i in range(len(whole.test)):
        n = whole.test.lengths[i]
        if n > 12:  # a longer text: the head run keeps its first 12 tokens, the tail run its last 12
            np.testing.assert_array_equal(head.test.ids[i], whole.test.ids[i, :12])
            np.testing.assert_array_equal(tail.test.ids[i], whole.test.ids[i, n - 12:n])
    assert (whole.test.lengths > 12).any()


def test_corrupted_cache_is_detected_and_rebuilt(keyword_dir, tmp_path, caplog):
    cache = tmp_path / "cache"
    good = prepare("imdb", CFG, keyword_dir, cache)
    (path,) = cache.glob("*.npz")
    path.write_bytes(path.read_bytes()[:200])
    with caplog.at_level(logging.WARNING, logger="bench"):
        rebuilt = prepare("imdb", CFG, keyword_dir, cache)
    assert "unreadable" in caplog.text and not rebuilt.cache_hit
    np.testing.assert_array_equal(good.train.ids, rebuilt.train.ids)
    assert prepare("imdb", CFG, keyword_dir, cache).cache_hit


def test_vocabulary_comes_from_training_texts_only():
    tok = train_tokenizer(["good movie<br />great", "bad movie"], DataConfig(vocab_size=50, min_frequency=1))
    vocab = tok.get_vocab()
    assert {"good", "movie", "great", "bad"} <= set(vocab)
    assert "br" not in vocab  # IMDB's <br /> is removed before tokenizing
    assert tok.encode("unseen").ids == [UNK_ID]
    assert tok.encode("GOOD").ids == [vocab["good"]]  # lower-cased


@pytest.mark.parametrize("train, message", [
    (pd.DataFrame({"review": ["a b"], "label": [0]}), "expected columns 'text' and 'label'"),
    (pd.DataFrame({"text": ["a b", "c d"], "label": [0, 5]}), "labels must be in 0..1"),
    (pd.DataFrame({"text": ["a b", "c d"], "label": [0.5, 1.0]}), "label must be an integer"),
    (pd.DataFrame({"text": ["a b", "  "], "label": [0, 1]}), "empty or non-string texts"),
    (pd.DataFrame({"text": pd.Series([], dtype=str), "label": pd.Series([], dtype=int)}), "the split is empty"),
])
def test_bad_data_is_a_one_line_error(tmp_path, train, message):
    root = write_dataset(tmp_path, "imdb", train, keyword_texts(10, 1))
    with pytest.raises(BenchError) as err:
        prepare("imdb", CFG, root, tmp_path / "cache")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_missing_folder_split_and_non_parquet_file(tmp_path):
    with pytest.raises(BenchError, match="data folder not found"):
        prepare("imdb", CFG, tmp_path / "nowhere", tmp_path / "cache")
    (tmp_path / "imdb").mkdir()
    keyword_texts(10, 0).to_parquet(tmp_path / "imdb" / "train.parquet")
    with pytest.raises(BenchError, match="missing test split"):
        prepare("imdb", CFG, tmp_path, tmp_path / "cache")
    (tmp_path / "imdb" / "test.parquet").write_text("this is not parquet")
    with pytest.raises(BenchError, match="not a readable parquet file"):
        prepare("imdb", CFG, tmp_path, tmp_path / "cache")


def _random_split() -> Split:
    """1,000 texts of 1-199 tokens, padded to 200."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 200, size=1000)
    ids = np.where(np.arange(200)[None, :] < lengths[:, None], 5, PAD_ID).astype(np.int32)
    return Split(ids, lengths, rng.integers(0, 2, size=1000), np.arange(1000))


def test_bucketed_batches_cover_each_example_once_and_cut_padding():
    split = _random_split()
    seen, padded = [], 0
    for b_ids, b_len, b_lab, idx in iterate_batches(split, 32, shuffle=True, seed=1, epoch=1, chunk=10):
        assert b_ids.shape == (len(idx), b_len.max())
        np.testing.assert_array_equal(b_lab, split.labels[idx])
        seen.extend(idx)
        padded += b_ids.size
    assert sorted(seen) == list(range(1000))
    assert padded < 0.6 * (1000 * 200)  # far less than padding every batch to max length
    # same seed and epoch → same order; another epoch → another order
    order = lambda s, e: [tuple(i) for *_, i in iterate_batches(split, 32, shuffle=True, seed=s, epoch=e)]
    assert order(1, 1) == order(1, 1) and order(1, 1) != order(1, 2)


@pytest.mark.parametrize("shuffle", [True, False])
def test_pad_multiple_rounds_batch_widths_up_and_keeps_the_batches(shuffle):
    split = _random_split()
    plain = list(iterate_batches(split, 32, shuffle=shuffle, seed=1, epoch=1, chunk=10))
    rounded = list(iterate_batches(split, 32, shuffle=shuffle, seed=1, epoch=1, chunk=10, pad_multiple=64))
    assert len({b[0].shape[1] for b in plain}) > 10  # one width per distinct longest length ...
    widths = {b[0].shape[1] for b in rounded}
    assert widths <= {64, 128, 192, 200}  # ... against multiples of 64, capped at the encoded width
    for (p_ids, p_len, _, p_idx), (r_ids, r_len, _, r_idx) in zip(plain, rounded, strict=True):
        np.testing.assert_array_equal(p_idx, r_idx)  # the same texts in the same order
        np.testing.assert_array_equal(r_ids[:, :p_ids.shape[1]], p_ids)
        assert (r_ids[:, p_ids.shape[1]:] == PAD_ID).all() and r_ids.shape[1] - p_ids.shape[1] < 64


@pytest.mark.skipif(not (SHARED_DATA / "imdb" / "train.parquet").exists(), reason="../shared/data/imdb absent")
def test_real_imdb_loads_offline(tmp_path):
    cfg = DataConfig(vocab_size=5000, max_length=64, train_subset=2000, train_eval_size=200)
    data = prepare("imdb", cfg, SHARED_DATA, tmp_path / "cache")
    assert len(data.train) + len(data.val) == 2000 and len(data.test) == 25000
    assert set(np.unique(data.test.labels)) == {0, 1}
    assert data.vocab_size == 5000


def test_subsample_train_keeps_class_balance_and_leaves_val_and_test_alone(keyword_dir, tmp_path):
    from bench.data import subsample_train

    cfg = DataConfig(vocab_size=200, max_length=48, min_frequency=1, train_eval_size=200)
    data = prepare("imdb", cfg, keyword_dir, tmp_path / "cache")
    assert data.max_length == 48  # the encoded data carries its own length
    small = subsample_train(data, 300, seed=0)
    assert len(small.train) == 300 and abs(small.train.labels.mean() - data.train.labels.mean()) < 0.01
    assert set(small.train.rows) <= set(data.train.rows)
    assert small.val is data.val and small.test is data.test
    assert len(small.train_eval) == min(len(data.train_eval), 300)
    assert set(small.train_eval.rows) <= set(small.train.rows)
    again = subsample_train(data, 300, seed=0)
    assert (again.train.rows == small.train.rows).all()  # reproducible
    assert subsample_train(data, 0) is data and subsample_train(data, 10**6) is data


def test_split_for_seed_redraws_a_stratified_split_per_seed_only_when_split_varies(keyword_dir, tmp_path):
    from bench.config import Config
    from bench.data import resplit, split_for_seed

    data = prepare("imdb", CFG, keyword_dir, tmp_path / "cache")
    fixed = Config(data=CFG)  # vary = init, order: the split stays at data.split_seed
    assert split_for_seed(data, fixed, 5) is data
    varied = Config(data=CFG, vary=["init", "order", "split"])
    assert split_for_seed(data, varied, CFG.split_seed) is data  # seed 0 under `split` is the prepared split
    pool = set(data.train.rows) | set(data.val.rows)
    vals = []
    for seed in (1, 2):
        d = split_for_seed(data, varied, seed)
        assert d.split_seed == seed and (len(d.train), len(d.val), len(d.train_eval)) == (1080, 120, 100)
        assert np.bincount(d.val.labels).tolist() == [60, 60]  # stratified
        assert not set(d.train.rows) & set(d.val.rows) and set(d.train.rows) | set(d.val.rows) == pool
        assert set(d.train_eval.rows) <= set(d.train.rows)
        # ids travel with their rows; the test split is untouched
        by_row = np.concatenate([data.train.ids, data.val.ids])[np.argsort(np.concatenate([data.train.rows,
                                                                                           data.val.rows]))]
        np.testing.assert_array_equal(d.val.ids, by_row[d.val.rows])  # all 1,200 rows are in the pool
        assert d.test is data.test
        again = split_for_seed(data, varied, seed)  # the same for every model at this seed
        np.testing.assert_array_equal(again.val.rows, d.val.rows)
        assert split_for_seed(d, varied, seed) is d  # idempotent
        vals.append(set(d.val.rows))
    assert vals[0] != vals[1] and vals[0] != set(data.val.rows)
    # resplit back to the base seed from the pool gives prepare's split (no train_subset)
    np.testing.assert_array_equal(resplit(split_for_seed(data, varied, 1), CFG, CFG.split_seed).val.rows,
                                  data.val.rows)


def test_a_grouped_validation_split_keeps_every_group_on_one_side():
    from bench.data import carve_val

    rows = np.arange(1000)
    labels = rows % 2  # each group of ten holds both labels
    groups = rows // 10
    splits = []
    for seed in (0, 1):
        tr, va = carve_val(rows, labels, groups, 0.1, seed)
        assert len(va) == 100 and np.bincount(labels[va]).tolist() == [50, 50]  # ten whole groups, stratified
        assert not set(groups[tr]) & set(groups[va]) and sorted(np.concatenate([tr, va])) == rows.tolist()
        splits.append(set(va))
    assert splits[0] != splits[1]
    tr, va = carve_val(rows, labels, None, 0.1, 0)  # ungrouped: text by text, the groups mixed
    assert len(va) == 100 and set(groups[tr]) & set(groups[va])


def test_movie_groups_are_known_for_the_original_imdb_texts_only():
    from bench.data import text_groups

    assert text_groups("imdb", ["any text"], "") is None
    with pytest.raises(BenchError, match="1 of 2 imdb training texts have no movie .*not the original"):
        text_groups("imdb", [IMDB_SHORTEST_TRAIN_TEXT, "a review written for this test"], "movie")
    with pytest.raises(BenchError, match="known for imdb only, not 'ag_news'"):
        text_groups("ag_news", ["a headline"], "movie")
    assert text_groups("imdb", [IMDB_SHORTEST_TRAIN_TEXT], "movie").tolist() == [0]


@pytest.mark.skipif(not (SHARED_DATA / "imdb" / "train.parquet").exists(), reason="needs the real IMDB data")
def test_every_real_imdb_training_review_has_its_movie_and_a_grouped_split_shares_none():
    from bench.data import carve_val, text_groups

    train = pd.read_parquet(SHARED_DATA / "imdb" / "train.parquet")
    groups = text_groups("imdb", train.text.tolist(), "movie")
    counts = np.bincount(groups)
    assert len(counts) == 3449 and counts.max() == 30  # the dataset's cap: at most 30 reviews a movie
    labels = train.label.to_numpy()
    tr, va = carve_val(np.arange(len(train)), labels, groups, 0.1, 0)
    assert not set(groups[tr]) & set(groups[va]) and abs(len(va) - 2500) < 50 and abs(labels[va].mean() - 0.5) < 0.01
    tr, va = carve_val(np.arange(len(train)), labels, None, 0.1, 0)
    assert np.isin(groups[va], groups[tr]).mean() > 0.95  # drawn text by text: 97% of val reviews' movies are in train
