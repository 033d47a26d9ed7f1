"""BERT encoder: parity with transformers.BertModel (forward, pooler, every gradient), padding
invariance, checkpoint round trips both ways, config refusals.

Small random checkpoints of odd sizes (hidden 36, 3 heads, 2 layers, intermediate 53,
vocab 101, 40 positions).  Tolerances: float32 vs float64 reference, 2e-5 relative-to-max on
activations, 1e-4 on gradients (accumulated over 2 layers).
"""
from __future__ import annotations

import json
import os

os.environ["HF_HUB_OFFLINE"] = "1"          # nothing is downloaded: local directories only
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import numpy as np
import pytest

import ironformer
from ironformer.models import BERT, BERTConfig
from ironformer.models import _encoder_ops as K


SMALL = dict(vocab_size=101, hidden_size=36, num_hidden_layers=2, num_attention_heads=3,
             intermediate_size=53, max_position_embeddings=40, type_vocab_size=2)


def _rand_model(seed=0):
    m = BERT(BERTConfig(**SMALL), seed=seed)
    rng = np.random.default_rng(seed + 100)
    for name, p in m.named_parameters():   # non-trivial LayerNorm / bias values too
        if "LayerNorm" in name or name.endswith("bias"):
            p.data = (p.data + rng.normal(0, 0.1, p.shape)).astype(np.float32)
        else:
            p.data = rng.normal(0, 0.2, p.shape).astype(np.float32)
    return m


def _batch(rng, b=3, t=11):
    ids = rng.integers(1, SMALL["vocab_size"], (b, t))
    lens = [t, 5, 1][:b] + [t] * max(0, b - 3)
    mask = np.zeros((b, t), np.int64)
    for i, n in enumerate(lens):
        mask[i, :n] = 1
    ids[mask == 0] = 0
    tt = rng.integers(0, 2, (b, t))
    return ids, mask, tt


def _rel(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)))
                 / max(1e-12, float(np.max(np.abs(b)))))


@pytest.fixture(scope="module")
def hf():
    torch = pytest.importorskip("torch", reason="torch not installed: no reference")
    transformers = pytest.importorskip("transformers", reason="transformers not installed")
    return torch, transformers


def _to_hf(model, hf, path):
    torch, transformers = hf
    model.save_pretrained(path)
    ref = transformers.BertModel.from_pretrained(str(path), attn_implementation="eager")
    return ref.double().eval()


@pytest.mark.parametrize("pack", [True, False], ids=["packed", "padded"])
@pytest.mark.parametrize("numpy_path", [False, True], ids=["kernels", "numpy"])
def test_parity_forward_pooler_grads(hf, tmp_path, numpy_path, pack, monkeypatch):
    torch, _ = hf
    if numpy_path:
        monkeypatch.setenv("IRONFORMER_ENCODER_NUMPY", "1")
    monkeypatch.setattr(BERT, "pack_padding", pack)   # per-token ops on real tokens only, or not
    rng = np.random.default_rng(1)
    model = _rand_model()
    ref = _to_hf(model, hf, tmp_path / "m")
    ids, mask, tt = _batch(rng)

    hid_t, pool_t = model(ids, mask, tt, return_pooled=True)     # Tensors in the autograd graph
    hidden, pooled = hid_t.numpy(), pool_t.numpy()
    out = ref(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
              token_type_ids=torch.tensor(tt))
    ref_h = out.last_hidden_state
    ref_p = out.pooler_output
    m3 = mask[..., None].astype(bool)       # padded positions are not compared (HF computes junk there too)
    assert _rel(np.where(m3, hidden, 0), np.where(m3, ref_h.detach().numpy(), 0)) < 2e-5
    assert _rel(pooled, ref_p.detach().numpy()) < 2e-5

    ph = rng.normal(size=hidden.shape).astype(np.float32) * mask[..., None]
    pp = rng.normal(size=pooled.shape).astype(np.float32)
    loss = (ref_h * torch.tensor(ph, dtype=torch.float64)).sum() + \
        (ref_p * torch.tensor(pp, dtype=torch.float64)).sum()
    loss.backward()
    ((hid_t * ph).sum() + (pool_t * pp).sum()).backward()
    ref_grads = {k: v.grad for k, v in ref.named_parameters()}
    names = [k for k, _ in model.named_parameters()]
    assert set(names) == set(ref_grads)
    # key.bias has an exactly-zero true gradient (softmax is shift invariant): its float32 value
    # is the rounding residue of a sum of dk rows as large as the query.bias terms (~6 here).
    # Compare every gradient relative to its own max, floored at 1e-2 of the largest gradient
    # anywhere: an absolute 1e-6 * gscale, ~3x the absolute errors of the largest gradients
    # (query/key weight, ~8e-6 = 3e-7 * gscale); a wrong key.bias gradient is O(1).
    gscale = max(float(np.abs(g.numpy()).max()) for g in ref_grads.values())
    for name, p in model.named_parameters():
        g_ref = ref_grads[name].numpy()
        assert p.grad is not None, name
        err = float(np.max(np.abs(p.grad - g_ref)))
        assert err <= 1e-4 * max(float(np.abs(g_ref).max()), 1e-2 * gscale), (name, err)


@pytest.mark.parametrize("pack", [True, False], ids=["packed", "padded"])
def test_padding_invariance(pack, monkeypatch):
    monkeypatch.setattr(BERT, "pack_padding", pack)
    model = _rand_model(3)
    rng = np.random.default_rng(5)
    lens = [7, 2, 13, 1]
    t = max(lens)
    ids = np.zeros((len(lens), t), np.int64)
    mask = np.zeros_like(ids)
    for i, n in enumerate(lens):
        ids[i, :n] = rng.integers(1, 101, n)
        mask[i, :n] = 1
    hb, pb, _ = model.run(ids, mask, return_pooled=True)
    for i, n in enumerate(lens):
        h1, p1, _ = model.run(ids[i:i + 1, :n], return_pooled=True)
        np.testing.assert_allclose(hb[i, :n], h1[0], rtol=0, atol=2e-5)
        np.testing.assert_allclose(pb[i], p1[0], rtol=0, atol=2e-5)


@pytest.mark.parametrize("act", ["gelu", "gelu_new"])
def test_hf_to_ours_round_trip(hf, tmp_path, act):
    torch, transformers = hf
    cfg = transformers.BertConfig(**SMALL, hidden_act=act)
    torch.manual_seed(0)
    ref = transformers.BertModel(cfg).eval()
    ref.save_pretrained(str(tmp_path / "hf"), safe_serialization=True)
    model = BERT.from_pretrained(tmp_path / "hf")
    ids, mask, tt = _batch(np.random.default_rng(2))
    with torch.no_grad():
        o = ref(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                token_type_ids=torch.tensor(tt))
    with ironformer.no_grad():
        h, p = (x.numpy() for x in model(ids, mask, tt, return_pooled=True))
    m3 = mask[..., None].astype(bool)
    assert _rel(np.where(m3, h, 0), np.where(m3, o.last_hidden_state.numpy(), 0)) < 2e-5
    assert _rel(p, o.pooler_output.numpy()) < 2e-5
    # ours -> disk -> ours keeps every array bit for bit; extra config keys survive
    model.save_pretrained(tmp_path / "ours")
    again = BERT.from_pretrained(tmp_path / "ours")
    for (k, a), (k2, b) in zip(model.named_parameters(), again.named_parameters()):
        assert k == k2 and np.array_equal(a.data, b.data)
    saved = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert saved["model_type"] == "bert" and saved["hidden_size"] == 36


def test_bert_prefix_and_buffers_ignored(tmp_path):
    from safetensors.numpy import save_file
    model = _rand_model(4)
    model.save_pretrained(tmp_path)
    sd = {"bert." + k: v for k, v in model.state_dict().items()}
    sd["bert.embeddings.position_ids"] = np.arange(40, dtype=np.int64)[None]
    save_file(sd, str(tmp_path / "model.safetensors"))
    again = BERT.from_pretrained(tmp_path)
    ids = np.array([[5, 6, 7]])
    np.testing.assert_array_equal(model.run(ids)[0], again.run(ids)[0])


@pytest.mark.parametrize("key,value,msg", [
    ("hidden_act", "relu", "hidden_act"),
    ("position_embedding_type", "relative_key", "position_embedding_type"),
    ("is_decoder", True, "is_decoder"),
    ("add_cross_attention", True, "add_cross_attention"),
    ("model_type", "gpt2", "model_type"),
])
def test_config_refusals(key, value, msg):
    d = dict(SMALL, model_type="bert")
    d[key] = value
    with pytest.raises(ValueError, match=msg):
        BERTConfig.from_dict(d)


def test_bad_inputs():
    model = _rand_model()
    with pytest.raises(IndexError, match="101"):
        model(np.array([[1, 101]]))
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model(np.ones((1, 41), np.int64))
    with pytest.raises(FileNotFoundError, match="config.json"):
        BERT.from_pretrained("/nonexistent/dir")


def test_attention_fallback_matches_kernel_path(monkeypatch):
    """When an attention kernel is merged, it must agree with the numpy fallback."""
    rng = np.random.default_rng(0)
    q, k, v = (rng.normal(size=(2, 3, 9, 12)).astype(np.float32) for _ in range(3))
    mask = np.ones((2, 9), np.int32)
    mask[1, 4:] = 0
    out, lse = K.attention_forward(q, k, v, key_mask=mask)
    monkeypatch.setenv("IRONFORMER_ENCODER_NUMPY", "1")
    out2, lse2 = K.attention_forward(q, k, v, key_mask=mask)
    np.testing.assert_allclose(out, out2, atol=2e-6)
    np.testing.assert_allclose(lse, lse2, atol=2e-6)
