"""Tokenizers (char + byte-level BPE) and the token data pipeline."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ironformer import corpus
from ironformer.data import TokenDataset, prepare_dataset
from ironformer.tokenizers import BPETokenizer, CharTokenizer, load_tokenizer

TEXT = corpus.read_play("macbeth")[:20000]
HARD = ["héllo wörld", "日本語のテキスト", "emoji 🙂🚀👩‍👩‍👧 mixed", "tabs\tand\nnewlines\r\n", "",
        "Ελληνικά και русский", "  leading  spaces ", "\u0000nul and \U0010FFFF"]


def test_char_round_trip_and_errors(tmp_path):
    tok = CharTokenizer.from_text(TEXT)
    assert tok.vocab_size == len(set(TEXT))
    ids = tok.encode(TEXT[:500])
    assert all(0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == TEXT[:500]
    with pytest.raises(ValueError, match="not in the vocabulary"):
        tok.encode("🙂")
    with pytest.raises(IndexError, match="out of range"):
        tok.decode([tok.vocab_size])
    tok.save(tmp_path)
    again = load_tokenizer(tmp_path)
    assert isinstance(again, CharTokenizer) and again.chars == tok.chars
    assert CharTokenizer.load(tmp_path / "tokenizer.json").encode("the") == tok.encode("the")


@pytest.fixture(scope="module")
def bpe(tmp_path_factory):
    d = tmp_path_factory.mktemp("bpe")
    p = d / "train.txt"
    p.write_text(TEXT, encoding="utf-8")
    return BPETokenizer.train([p], vocab_size=400)


def test_bpe_round_trip_any_utf8(bpe, tmp_path):
    assert 257 <= bpe.vocab_size <= 400
    ids = bpe.encode(TEXT[:2000])
    assert len(ids) < 2000 * 0.8            # merges compress Shakespeare
    assert bpe.decode(ids) == TEXT[:2000]
    for s in HARD:
        assert bpe.decode(bpe.encode(s)) == s, s
    bpe.save(tmp_path / "tok.json")
    again = load_tokenizer(tmp_path / "tok.json")
    assert isinstance(again, BPETokenizer)
    for s in HARD:
        assert again.encode(s) == bpe.encode(s)
    assert bpe.eos_token_id is not None


def test_hf_tokenizer_json_loads(tmp_path):
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders
    t = Tokenizer(models.BPE(vocab={"a": 0, "b": 1, "ab": 2}, merges=[("a", "b")]))
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    t.decoder = decoders.ByteLevel()
    t.save(str(tmp_path / "tokenizer.json"))
    tok = load_tokenizer(tmp_path)
    assert tok.encode("abab") == [2, 2]
    assert tok.decode([2, 0]) == "aba"
    del transformers


def test_missing_tokenizer_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_tokenizer(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no such file"):
        BPETokenizer.train([tmp_path / "missing.txt"])


def test_prepare_dataset_and_batches(tmp_path):
    tok = CharTokenizer.from_text(TEXT)
    meta = prepare_dataset(TEXT, tok, tmp_path)
    assert meta["dtype"] == "uint16"
    assert meta["n_train"] == int(len(TEXT) * 0.9) and meta["n_train"] + meta["n_val"] == len(TEXT)
    ds = TokenDataset(tmp_path)
    assert isinstance(ds.splits["train"], np.memmap)
    x, y = ds.get_batch("train", 5, 17, np.random.default_rng(0))
    assert x.shape == y.shape == (5, 17) and x.dtype == np.int64
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])
    # each row is a contiguous slice of the training text
    for row in x:
        assert tok.decode(row) in TEXT[:meta["n_train"]]
    x2, _ = ds.get_batch("train", 5, 17, np.random.default_rng(0))
    np.testing.assert_array_equal(x, x2)
    xv, _ = ds.get_batch("val", 2, 9, np.random.default_rng(0))
    for row in xv:
        assert tok.decode(row) in TEXT[meta["n_train"]:]
    with pytest.raises(ValueError, match="block_size"):
        ds.get_batch("val", 1, meta["n_val"], np.random.default_rng(0))
    assert json.loads((tmp_path / "meta.json").read_text())["vocab_size"] == tok.vocab_size
