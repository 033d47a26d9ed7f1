"""Training loop: schedule, bit-exact resume, NaN guard keeping the last good checkpoint, outputs."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

import ironformer as irf
from ironformer import corpus
from ironformer.train import TrainConfig, TrainingDiverged, load_checkpoint, lr_at, train


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("data") / "macbeth.txt"
    p.write_text(corpus.read_play("macbeth")[:30000], encoding="utf-8")
    return p


def _cfg(text_file, out, **kw):
    base = dict(data=[str(text_file)], n_layer=2, n_head=2, n_embd=24, block_size=16, batch_size=3,
                max_iters=6, lr=3e-3, warmup_iters=2, eval_interval=3, eval_iters=2,
                out_dir=str(out), progress=False, plot=False, seed=7, threads=1)
    base.update(kw)
    return TrainConfig(**base)


def test_lr_schedule():
    cfg = TrainConfig(lr=1e-3, min_lr=1e-4, warmup_iters=10, max_iters=110)
    assert lr_at(0, cfg) == pytest.approx(1e-3 / 11)
    assert lr_at(9, cfg) == pytest.approx(1e-3 * 10 / 11)
    assert lr_at(10, cfg) == pytest.approx(1e-3)
    assert lr_at(60, cfg) == pytest.approx(1e-4 + 0.5 * 9e-4)
    assert lr_at(110, cfg) == pytest.approx(1e-4)
    assert lr_at(500, cfg) == pytest.approx(1e-4)
    lrs = [lr_at(s, cfg) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


@pytest.mark.parametrize("extra", [dict(), dict(dropout=0.1, grad_accum=2)])
def test_resume_is_bit_exact(tmp_path, text_file, extra):
    full = train(_cfg(text_file, tmp_path / "full", **extra))
    half = train(_cfg(text_file, tmp_path / "half", max_iters=3, lr_decay_iters=6, **extra))
    assert half.step == 3
    resumed = train(_cfg(text_file, tmp_path / "half", resume=True, **extra))
    assert resumed.step == full.step == 6
    a, b = full.model.arrays(), resumed.model.arrays()
    for n in a:
        np.testing.assert_array_equal(a[n], b[n], err_msg=n)
    assert full.val_loss == resumed.val_loss and full.train_loss == resumed.train_loss
    la = [json.loads(x) for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    lb = [json.loads(x) for x in (tmp_path / "half" / "metrics.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in la if r["event"] == "step"] == [r["loss"] for r in lb if r["event"] == "step"]
    # training moved the parameters and lowered the loss from its start (ln 40 ~ 3.7)
    assert full.train_loss < math.log(full.model.config.vocab_size)


def test_outputs_and_reload(tmp_path, text_file):
    res = train(_cfg(text_file, tmp_path / "o", max_iters=3, plot=True))
    d = tmp_path / "o"
    for f in ("config.json", "model.safetensors", "tokenizer.json", "ckpt.safetensors", "metrics.jsonl",
              "train_config.json"):
        assert (d / f).is_file(), f
    ck = load_checkpoint(d)
    assert ck["step"] == 3 and set(ck["model"]) == set(res.model.arrays())
    again = irf.GPT.from_pretrained(d)
    ids = np.array([[1, 2, 3]])
    np.testing.assert_array_equal(again.generate(ids, 5, temperature=0), res.model.generate(ids, 5, temperature=0))
    assert ck["history"][-1]["val_loss"] == res.val_loss
    with pytest.raises(ValueError, match="not an ironformer"):
        load_checkpoint(d / "model.safetensors")


def test_nan_stops_and_keeps_last_good_checkpoint(tmp_path, text_file):
    out = tmp_path / "nan"
    train(_cfg(text_file, out, max_iters=3))
    before = (out / "ckpt.safetensors").read_bytes()
    with pytest.raises(TrainingDiverged, match="kept"):
        train(_cfg(text_file, out, max_iters=9, resume=True, lr=1e12, warmup_iters=0, grad_clip=0.0))
    assert (out / "ckpt.safetensors").read_bytes() == before
    assert load_checkpoint(out)["step"] == 3


def test_config_validation(tmp_path):
    with pytest.raises(ValueError, match="divisible"):
        train(TrainConfig(n_embd=30, n_head=4, out_dir=str(tmp_path), progress=False))
    with pytest.raises(ValueError, match="tokenizer"):
        train(TrainConfig(tokenizer="words", out_dir=str(tmp_path), progress=False))
    with pytest.raises(FileNotFoundError):
        train(TrainConfig(data=[str(tmp_path / "none.txt")], out_dir=str(tmp_path), progress=False))


def test_top_level_exports(tmp_path, text_file):
    assert irf.GPT is irf.models.GPT and irf.GPTConfig is irf.models.GPTConfig
    res = irf.train(_cfg(text_file, tmp_path / "t", max_iters=1, eval_interval=1, eval_iters=1))
    assert res.step == 1 and isinstance(res.model, irf.GPT)
    assert irf.train.TrainConfig is irf.TrainConfig
