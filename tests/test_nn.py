"""nn modules against PyTorch float64 with the same weights: MLP, a transformer block, KV cache,
state_dict round trips through safetensors and into torch modules, training sanity checks."""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest

import ironformer as irf
from ironformer import nn
from ironformer.nn import functional as F

torch = pytest.importorskip("torch")
tnn = torch.nn
TF = torch.nn.functional


def close(got, want, rtol=2e-5, atol=2e-5):
    want = want.detach().numpy() if hasattr(want, "detach") else np.asarray(want)
    got = got.data if isinstance(got, irf.Tensor) else np.asarray(got)
    assert got.shape == want.shape, f"shape {got.shape} != {want.shape}"
    scale = max(float(np.max(np.abs(want))) if want.size else 1.0, 1e-30)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol * scale)


# ---------------------------------------------------------------------------------------
# a GPT-2 style block in both frameworks, with identical parameter names

class Block(nn.Module):
    def __init__(self, C, nh, causal=True):
        super().__init__()
        self.ln_1 = nn.LayerNorm(C)
        self.attn = nn.MultiheadSelfAttention(C, nh, causal=causal)
        self.ln_2 = nn.LayerNorm(C)
        self.mlp = nn.Sequential(OrderedDict(c_fc=nn.Linear(C, 4 * C), gelu=nn.GELU("tanh"),
                                             c_proj=nn.Linear(4 * C, C)))

    def forward(self, x, attention_mask=None):
        x = x + self.attn(self.ln_1(x), attention_mask=attention_mask)
        return x + self.mlp(self.ln_2(x))


class TorchMHA(tnn.Module):
    def __init__(self, C, nh, causal=True):
        super().__init__()
        self.nh, self.causal = nh, causal
        self.c_attn = tnn.Linear(C, 3 * C)
        self.c_proj = tnn.Linear(C, C)

    def forward(self, x, attention_mask=None):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.nh, C // self.nh).transpose(1, 2) for t in (q, k, v))
        mask = torch.ones(T, T, dtype=torch.bool).tril() if self.causal else torch.ones(T, T, dtype=torch.bool)
        mask = mask[None, None]
        if attention_mask is not None:
            mask = mask & torch.as_tensor(attention_mask, dtype=torch.bool)[:, None, None, :]
        y = TF.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, C))


class TorchBlock(tnn.Module):
    def __init__(self, C, nh, causal=True):
        super().__init__()
        self.ln_1 = tnn.LayerNorm(C)
        self.attn = TorchMHA(C, nh, causal)
        self.ln_2 = tnn.LayerNorm(C)
        self.mlp = tnn.Sequential(OrderedDict(c_fc=tnn.Linear(C, 4 * C), gelu=tnn.GELU("tanh"),
                                              c_proj=tnn.Linear(4 * C, C)))

    def forward(self, x, attention_mask=None):
        x = x + self.attn(self.ln_1(x), attention_mask)
        return x + self.mlp(self.ln_2(x))


def _torch_twin(module_irf, module_torch):
    module_torch.double()
    module_torch.load_state_dict({k: torch.tensor(v.astype(np.float64)) for k, v in module_irf.state_dict().items()})
    return module_torch


def _randomize(module, rng, scale=0.3):
    for p in module.parameters():
        p.data[...] = rng.standard_normal(p.shape) * scale + (1.0 if p.ndim == 1 and False else 0.0)


def _compare_grads(m, tm, rtol=1e-4, atol=1e-4):
    tparams = dict(tm.named_parameters())
    names = [n for n, _ in m.named_parameters()]
    assert names == list(tparams), "parameter names differ from the torch twin"
    for n, p in m.named_parameters():
        assert p.grad is not None, f"{n} has no gradient"
        close(p.grad, tparams[n].grad, rtol=rtol, atol=atol)


@pytest.mark.parametrize("act", ["gelu", "relu", "tanh", "sigmoid"])
def test_mlp_matches_torch(rng, act):
    irf.manual_seed(0)
    acts = {"gelu": (nn.GELU(), tnn.GELU()), "relu": (nn.ReLU(), tnn.ReLU()), "tanh": (nn.Tanh(), tnn.Tanh()),
            "sigmoid": (nn.Sigmoid(), tnn.Sigmoid())}
    a, ta = acts[act]
    m = nn.Sequential(nn.Linear(13, 32), a, nn.Linear(32, 7))
    tm = _torch_twin(m, tnn.Sequential(tnn.Linear(13, 32), ta, tnn.Linear(32, 7)))
    x = rng.standard_normal((3, 5, 13)).astype(np.float32)
    y, ty = m(irf.tensor(x)), tm(torch.tensor(x, dtype=torch.float64))
    close(y, ty)
    g = rng.standard_normal(ty.shape)
    y.backward(g.astype(np.float32))
    ty.backward(torch.tensor(g))
    _compare_grads(m, tm)


@pytest.mark.parametrize("causal,padded", [(True, False), (False, True), (True, True)])
def test_transformer_block_matches_torch(rng, causal, padded):
    irf.manual_seed(1)
    B, T, C, nh = 2, 7, 32, 4
    m = Block(C, nh, causal=causal)
    _randomize(m, rng)
    tm = _torch_twin(m, TorchBlock(C, nh, causal))
    x = rng.standard_normal((B, T, C)).astype(np.float32)
    mask = None
    if padded:
        mask = np.ones((B, T), np.int64)
        mask[1, 5:] = 0   # right padding in the second sequence
    xi = irf.tensor(x, requires_grad=True)
    tx = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    y, ty = m(xi, attention_mask=mask), tm(tx, attention_mask=mask)
    close(y, ty, rtol=1e-4, atol=1e-5)
    g = rng.standard_normal(ty.shape)
    y.backward(g.astype(np.float32))
    ty.backward(torch.tensor(g))
    close(xi.grad, tx.grad, rtol=1e-4, atol=1e-4)
    _compare_grads(m, tm)


def test_kv_cache_incremental_decoding_matches_full(rng):
    irf.manual_seed(2)
    B, T, C, nh = 2, 9, 24, 3
    attn = nn.MultiheadSelfAttention(C, nh, causal=True)
    x = irf.tensor(rng.standard_normal((B, T, C)))
    with irf.no_grad():
        full = attn(x)
        y, cache = attn(x[:, :4], use_cache=True)
        outs = [y]
        for t in range(4, T):
            y, cache = attn(x[:, t:t + 1], kv_cache=cache)
            outs.append(y)
            assert cache[0].shape == (B, nh, t + 1, C // nh)
    inc = np.concatenate([o.data for o in outs], axis=1)
    np.testing.assert_allclose(inc, full.data, rtol=1e-5, atol=1e-5)


def test_cross_entropy_embedding_dropout(rng):
    B, T, V, C = 2, 5, 11, 8
    logits = rng.standard_normal((B, T, V)).astype(np.float32)
    targets = rng.integers(0, V, (B, T))
    targets[0, 1] = -100
    li = irf.tensor(logits, requires_grad=True)
    tl = torch.tensor(logits, dtype=torch.float64, requires_grad=True)
    loss = F.cross_entropy(li, targets)
    tloss = TF.cross_entropy(tl.view(-1, V), torch.tensor(targets).view(-1), ignore_index=-100)
    close(loss, tloss)
    loss.backward()
    tloss.backward()
    close(li.grad, tl.grad)
    emb = nn.Embedding(V, C)
    temb = _torch_twin(emb, tnn.Embedding(V, C))
    ids = rng.integers(0, V, (B, T))
    out, tout = emb(ids), temb(torch.tensor(ids))
    close(out, tout)
    g = rng.standard_normal(tout.shape)
    out.backward(g.astype(np.float32))
    tout.backward(torch.tensor(g))
    close(emb.weight.grad, temb.weight.grad)
    # dropout: identity in eval, scaled mask in train, backward uses the same mask
    d = nn.Dropout(0.25)
    x = irf.tensor(np.ones((64, 64)), requires_grad=True)
    d.eval()
    assert d(x) is x
    d.train()
    irf.manual_seed(3)
    y = d(x)
    kept = y.data != 0
    assert 0.6 < kept.mean() < 0.9
    np.testing.assert_allclose(y.data[kept], 1 / 0.75, rtol=1e-6)
    y.backward(np.ones((64, 64), np.float32))
    np.testing.assert_array_equal(x.grad != 0, kept)


def test_module_registration_and_modes():
    irf.manual_seed(0)
    m = Block(16, 2)
    names = [n for n, _ in m.named_parameters()]
    assert names[:4] == ["ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias"]
    assert "mlp.c_fc.weight" in names and len(list(m.parameters())) == len(names) == 12
    assert m.attn.c_attn.weight.shape == (48, 16)
    assert len(list(m.modules())) == 11   # block, ln_1, attn (+3), ln_2, mlp (+3)
    m.eval()
    assert not any(mod.training for mod in m.modules())
    m.train()
    assert all(mod.training for mod in m.modules())
    lin = nn.Linear(100, 50)
    assert np.abs(lin.weight.data).max() <= 0.1 and np.abs(lin.weight.data).max() > 0.09
    # tied parameters are listed once by parameters() but under both names in state_dict
    m.mlp.c_proj.weight = m.mlp.c_fc.weight
    assert len(list(m.parameters())) == 11


def test_state_dict_roundtrip_through_safetensors_and_torch(rng, tmp_path):
    irf.manual_seed(4)
    m = Block(16, 2)
    _randomize(m, rng)
    path = tmp_path / "block.safetensors"
    irf.save(m.state_dict(), path)
    sd = irf.load(path)
    assert list(sd) == list(m.state_dict())
    m2 = Block(16, 2)
    m2.load_state_dict(sd)
    for (n, p), (n2, p2) in zip(m.named_parameters(), m2.named_parameters()):
        assert n == n2 and np.array_equal(p.data, p2.data)
    # the same file loads into the torch module of the same structure
    tm = TorchBlock(16, 2)
    tm.load_state_dict({k: torch.tensor(v) for k, v in sd.items()})
    x = rng.standard_normal((2, 5, 16)).astype(np.float32)
    with irf.no_grad():
        y = m2(irf.tensor(x))
    with torch.no_grad():
        ty = tm(torch.tensor(x))
    np.testing.assert_allclose(y.data, ty.numpy(), rtol=1e-4, atol=1e-4)
    # and back: a torch state_dict loads into ironformer
    m3 = Block(16, 2)
    m3.load_state_dict(tm.state_dict())
    assert np.array_equal(m3.attn.c_attn.weight.data, sd["attn.c_attn.weight"])


def test_load_state_dict_errors():
    m = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    sd = {k: v.copy() for k, v in m.state_dict().items()}
    bad = dict(sd)
    del bad["0.bias"]
    bad["extra.weight"] = np.zeros(2, np.float32)
    with pytest.raises(RuntimeError, match=r'Missing key\(s\) in state_dict: "0.bias"') as e:
        m.load_state_dict(bad)
    assert 'Unexpected key(s) in state_dict: "extra.weight"' in str(e.value)
    missing, unexpected = m.load_state_dict(bad, strict=False)
    assert missing == ["0.bias"] and unexpected == ["extra.weight"]
    bad = dict(sd)
    bad["2.weight"] = np.zeros((4, 2), np.float32)
    before = m.state_dict()["0.weight"].copy()
    bad["0.weight"] = before + 1
    with pytest.raises(RuntimeError, match=r"size mismatch for 2.weight: copying a param with shape \(4, 2\) "
                                           r"from checkpoint, the shape in current model is \(2, 4\)"):
        m.load_state_dict(bad)
    assert np.array_equal(m.state_dict()["0.weight"], before), "a failed load must not modify the module"


def test_sigmoid_mlp_learns_xor():
    irf.manual_seed(0)
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
    y = np.array([[0], [1], [1], [0]], np.float32)
    m = nn.Sequential(nn.Linear(2, 8), nn.Sigmoid(), nn.Linear(8, 1), nn.Sigmoid())
    opt = irf.optim.SGD(m.parameters(), lr=2.0, momentum=0.9)
    xt, yt = irf.tensor(x), irf.tensor(y)
    for _ in range(400):
        opt.zero_grad()
        loss = ((m(xt) - yt) ** 2).mean()
        loss.backward()
        opt.step()
    pred = m(xt).data
    assert loss.item() < 0.02
    assert np.array_equal(pred > 0.5, y > 0.5)


class TinyLM(nn.Module):
    def __init__(self, V, C, nh, L, T):
        super().__init__()
        self.wte = nn.Embedding(V, C)
        self.wpe = nn.Embedding(T, C)
        self.h = nn.ModuleList([Block(C, nh) for _ in range(L)])
        self.ln_f = nn.LayerNorm(C)
        self.lm_head = nn.Linear(C, V, bias=False)

    def forward(self, idx, targets):
        B, T = idx.shape
        x = self.wte(idx) + self.wpe(np.arange(T))
        for b in self.h:
            x = b(x)
        return F.cross_entropy(self.lm_head(self.ln_f(x)), targets)


def test_tiny_transformer_overfits_one_batch(rng):
    irf.manual_seed(5)
    V, C, T = 17, 32, 12
    m = TinyLM(V, C, 4, 2, T)
    idx = rng.integers(0, V, (4, T))
    targets = np.roll(idx, -1, axis=1)
    opt = irf.optim.AdamW(m.parameters(), lr=3e-3, weight_decay=0.0)
    first = None
    for _ in range(120):
        opt.zero_grad()
        loss = m(idx, targets)
        loss.backward()
        irf.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        first = loss.item() if first is None else first
    assert first > 2.5
    assert loss.item() < 0.1, f"loss {first:.3f} -> {loss.item():.3f}"
