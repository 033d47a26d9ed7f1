"""GPT-2 model: parity with transformers (logits, loss, every gradient, greedy tokens),
checkpoint round trips, refusal of unsupported configs, KV-cache generation."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import ironformer as irf
from ironformer.models import GPT, GPTConfig

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

# odd sizes on purpose: head size 16, 3 heads, vocab 97 (prime), context 40
HF_KW = dict(vocab_size=97, n_positions=40, n_embd=48, n_layer=2, n_head=3,
             resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def _np(x):
    if x is None:
        return None
    if hasattr(x, "detach"):
        x = x.detach()
    if hasattr(x, "numpy"):
        return np.asarray(x.numpy())
    return np.asarray(x)


def _hf_model(**kw):
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(**{**HF_KW, **kw})
    m = transformers.GPT2LMHeadModel(cfg)
    with torch.no_grad():                      # non-trivial LayerNorm / bias values
        for n, p in m.named_parameters():
            if n.endswith("bias") or ".ln_" in n:
                p.add_(0.05 * torch.randn_like(p))
    return m.eval()


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("hf_gpt2")
    _hf_model().save_pretrained(d, safe_serialization=True)
    return d


@pytest.fixture(scope="module")
def hf(hf_dir):
    return transformers.GPT2LMHeadModel.from_pretrained(hf_dir).eval()


def _ids(B, T, seed=0, V=97):
    return np.random.default_rng(seed).integers(0, V, size=(B, T)).astype(np.int64)


def test_logits_and_loss_match_transformers(hf_dir, hf):
    model = GPT.from_pretrained(hf_dir)
    assert model.config == GPTConfig(vocab_size=97, block_size=40, n_layer=2, n_head=3, n_embd=48)
    idx, tgt = _ids(3, 37, 1), _ids(3, 37, 2)
    logits, loss = model(idx, tgt)
    with torch.no_grad():
        ref = hf(torch.from_numpy(idx), labels=None)
        ref_logits = ref.logits
        ref_loss = torch.nn.functional.cross_entropy(ref_logits.reshape(-1, 97), torch.from_numpy(tgt).reshape(-1))
    assert tuple(logits.shape) == (3, 37, 97)
    np.testing.assert_allclose(_np(logits), ref_logits.numpy(), atol=2e-5, rtol=1e-4)
    assert abs(float(loss.item()) - float(ref_loss)) < 1e-5
    _, none_loss = model(idx)
    assert none_loss is None


def test_every_gradient_matches_transformers(hf_dir, hf):
    model = GPT.from_pretrained(hf_dir)
    model.train()
    idx, tgt = _ids(2, 23, 3), _ids(2, 23, 4)
    _, loss = model(idx, tgt)
    loss.backward()
    hf.zero_grad()
    logits = hf(torch.from_numpy(idx)).logits
    torch.nn.functional.cross_entropy(logits.reshape(-1, 97), torch.from_numpy(tgt).reshape(-1)).backward()
    ref = dict(hf.named_parameters())
    names = [n for n, _ in model.named_parameters()]
    assert len(names) == len(ref) == 2 + 2 + 12 * 2  # wte wpe ln_f(2) + 12 per block
    for name, p in model.named_parameters():
        g = _np(p.grad)
        r = ref[name].grad.numpy()
        if name.endswith(CONV1D):
            r = r.T
        assert g is not None, name
        np.testing.assert_allclose(g, r, atol=3e-5, rtol=1e-3, err_msg=name)


def test_greedy_generation_matches_transformers(hf_dir, hf):
    model = GPT.from_pretrained(hf_dir)
    prompt = _ids(2, 5, 5)
    out = model.generate(prompt, max_new_tokens=30, temperature=0)
    with torch.no_grad():
        ref = hf.generate(torch.from_numpy(prompt), attention_mask=torch.ones(2, 5, dtype=torch.long),
                          max_new_tokens=30, do_sample=False, pad_token_id=0)
    assert out.dtype == np.int64 and out.shape == (2, 35)
    np.testing.assert_array_equal(out, ref.numpy())


def test_kv_cache_matches_full_forward_and_crops(hf_dir):
    """Cached decoding == recomputing the full (cropped) forward each step, past block_size."""
    model = GPT.from_pretrained(hf_dir)
    prompt = _ids(1, 33, 6)
    out = model.generate(prompt, max_new_tokens=15, temperature=0)   # crosses block_size 40
    seq = prompt.copy()
    with irf.no_grad():
        for _ in range(15):
            logits, _ = model(seq[:, -40:])
            nxt = int(np.argmax(_np(logits)[0, -1]))
            seq = np.concatenate([seq, [[nxt]]], axis=1)
    np.testing.assert_array_equal(out, seq)


def test_sampling_options(hf_dir):
    model = GPT.from_pretrained(hf_dir)
    prompt = _ids(2, 4, 7)
    greedy = model.generate(prompt, 12, temperature=0)
    np.testing.assert_array_equal(model.generate(prompt, 12, temperature=0.7, top_k=1, seed=3), greedy)
    np.testing.assert_array_equal(model.generate(prompt, 12, top_p=1e-6, seed=3), greedy)
    a = model.generate(prompt, 12, temperature=1.0, seed=11)
    b = model.generate(prompt, 12, temperature=1.0, seed=11)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, model.generate(prompt, 12, temperature=1.0, seed=12))
    # eos: every row padded with eos after it appears; stops once all rows finished
    eos = int(greedy[0, 4])
    out = model.generate(prompt[:1], 12, temperature=0, eos_token_id=eos)
    assert out.shape == (1, 5) and out[0, -1] == eos
    stream = list(model.generate_stream(prompt, 6, temperature=0))
    np.testing.assert_array_equal(np.stack(stream, 1), greedy[:, 4:10])
    with pytest.raises(ValueError, match="temperature"):
        model.generate(prompt, 3, temperature=-1)
    with pytest.raises(IndexError, match="out of range"):
        model.generate(np.array([[97]]), 3)


def test_save_pretrained_loads_in_transformers(tmp_path):
    cfg = GPTConfig(vocab_size=61, block_size=17, n_layer=3, n_head=2, n_embd=22)
    model = GPT(cfg, seed=5)
    model.save_pretrained(tmp_path / "m")
    ref = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "m").eval()
    idx = _ids(2, 17, 8, V=61)
    with torch.no_grad():
        r = ref(torch.from_numpy(idx)).logits.numpy()
    with irf.no_grad():
        logits, _ = model(idx)
    np.testing.assert_allclose(_np(logits), r, atol=2e-5, rtol=1e-4)
    again = GPT.from_pretrained(tmp_path / "m")
    for (n, a), b in zip(model.arrays().items(), again.arrays().values()):
        np.testing.assert_array_equal(a, b, err_msg=n)


def test_init_is_gpt2_style():
    cfg = GPTConfig(vocab_size=50, block_size=8, n_layer=4, n_head=2, n_embd=64)
    arr = GPT(cfg, seed=0).arrays()
    assert abs(arr["transformer.wte.weight"].std() - 0.02) < 2e-3
    assert abs(arr["transformer.h.0.mlp.c_proj.weight"].std() - 0.02 / np.sqrt(8)) < 1e-3
    assert np.all(arr["transformer.h.1.attn.c_attn.bias"] == 0)
    assert np.all(arr["transformer.h.1.ln_1.weight"] == 1)
    np.testing.assert_array_equal(GPT(cfg, seed=0).arrays()["transformer.wpe.weight"],
                                  arr["transformer.wpe.weight"])


def test_keys_without_prefix_and_sharded(tmp_path, hf_dir):
    base = GPT.from_pretrained(hf_dir).arrays()
    # GPT2Model saves keys without the 'transformer.' prefix
    body = transformers.GPT2Model.from_pretrained(hf_dir)
    body.save_pretrained(tmp_path / "noprefix", safe_serialization=True)
    cfg = json.loads((tmp_path / "noprefix" / "config.json").read_text())
    assert cfg["model_type"] == "gpt2"
    for n, a in GPT.from_pretrained(tmp_path / "noprefix").arrays().items():
        np.testing.assert_array_equal(a, base[n], err_msg=n)
    full = transformers.GPT2LMHeadModel.from_pretrained(hf_dir)
    full.save_pretrained(tmp_path / "sharded", safe_serialization=True, max_shard_size="40KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    for n, a in GPT.from_pretrained(tmp_path / "sharded").arrays().items():
        np.testing.assert_array_equal(a, base[n], err_msg=n)


@pytest.mark.parametrize("change, msg", [
    ({"activation_function": "relu"}, "activation_function"),
    ({"activation_function": "gelu"}, "activation_function"),
    ({"scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse_layer_idx"),
    ({"add_cross_attention": True}, "add_cross_attention"),
    ({"n_inner": 100}, "n_inner"),
    ({"scale_attn_weights": False}, "scale_attn_weights"),
    ({"model_type": "gpt_neo"}, "model_type"),
])
def test_unsupported_configs_are_refused(tmp_path, hf_dir, change, msg):
    d = tmp_path / "bad"
    shutil.copytree(hf_dir, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(change)
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=msg):
        GPT.from_pretrained(d)


def test_missing_files_and_bad_shapes(tmp_path, hf_dir):
    with pytest.raises(FileNotFoundError, match="config.json"):
        GPT.from_pretrained(tmp_path)
    d = tmp_path / "wrong"
    shutil.copytree(hf_dir, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["n_embd"] = 51
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="does not match"):
        GPT.from_pretrained(d)
    with pytest.raises(ValueError, match="divisible"):
        GPTConfig(vocab_size=10, block_size=4, n_layer=1, n_head=3, n_embd=8)
