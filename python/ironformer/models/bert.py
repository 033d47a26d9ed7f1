"""BERT encoder (Devlin et al. 2018) with the parameter names of Hugging Face ``BertModel``.

Reads and writes Hugging Face checkpoint directories (config.json + model.safetensors), so
``bert-base-uncased``-style models and sentence-transformers models (all-MiniLM-L6-v2, ...)
load unchanged, and ``transformers.BertModel.from_pretrained`` loads what we save.

BERT is an ``nn.Module`` (parameters, state_dict, train/eval as usual), but the encoder
runs as ONE autograd node with a hand-written backward (llm.c style): every layer's
``forward`` returns its output and a small cache, ``backward`` takes the output gradient
and the cache, accumulates parameter gradients (``param.grad +=``) and returns the input
gradient.  That keeps the per-op graph bookkeeping out of a 12-layer model and lets q/k/v
run as one GEMM.  The arithmetic runs in ``ironformer.ops`` kernels (see
``_encoder_ops``).  Dropout is not applied (inference and fine-tuning are deterministic,
like ``model.eval()``).

    model = BERT.from_pretrained("path/to/bert")          # HF checkpoint directory
    hidden = model(input_ids, attention_mask)             # Tensor (B, T, hidden)
    hidden, pooled = model(input_ids, attention_mask, return_pooled=True)
    hidden, pooled, cache = model.run(ids, mask, keep_for_backward=True)   # numpy level
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from .. import autograd
from ..autograd import Function, Tensor
from ..nn import Module, ModuleList, Parameter
from . import _encoder_ops as K

__all__ = ["BERTConfig", "BERT"]

_F32 = np.float32


# ---------------------------------------------------------------------------------------------
@dataclass
class BERTConfig:
    """Hyper-parameters, named as in Hugging Face ``BertConfig`` (defaults: bert-base)."""
    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"                  # exact erf GELU; gelu_new / gelu_pytorch_tanh: tanh form
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    initializer_range: float = 0.02
    hidden_dropout_prob: float = 0.1          # kept for round trips; not applied
    attention_probs_dropout_prob: float = 0.1
    add_pooling_layer: bool = True            # pooler.dense (tanh on the [CLS] state)
    extra: dict = field(default_factory=dict, repr=False)   # other HF keys, written back on save

    _SUPPORTED_ACTS = {"gelu": "none", "gelu_python": "none", "gelu_new": "tanh",
                       "gelu_pytorch_tanh": "tanh", "gelu_fast": "tanh"}

    def __post_init__(self):
        if self.hidden_act not in self._SUPPORTED_ACTS:
            raise ValueError(
                f"BERTConfig: hidden_act={self.hidden_act!r} is not supported; ironformer's BERT "
                f"implements GELU (exact or tanh form): {', '.join(self._SUPPORTED_ACTS)}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"BERTConfig: hidden_size={self.hidden_size} is not divisible by "
                f"num_attention_heads={self.num_attention_heads}")
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "max_position_embeddings", "type_vocab_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"BERTConfig: {name} must be >= 1, got {getattr(self, name)}")

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_dict(cls, d: dict) -> "BERTConfig":
        """Build from a Hugging Face config.json dict; refuse what this model cannot honour."""
        d = dict(d)
        mt = d.get("model_type", "bert")
        if mt not in ("bert",):
            raise ValueError(f"BERTConfig: model_type={mt!r} is not a BERT checkpoint")
        if d.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(
                f"BERTConfig: position_embedding_type={d['position_embedding_type']!r} is not "
                "supported (only 'absolute')")
        if d.get("is_decoder", False):
            raise ValueError("BERTConfig: is_decoder=True (causal BERT) is not supported")
        if d.get("add_cross_attention", False):
            raise ValueError("BERTConfig: add_cross_attention=True is not supported")
        if d.get("chunk_size_feed_forward", 0) not in (0, None):
            pass  # chunking does not change results
        known = {f.name for f in fields(cls)} - {"extra"}
        kw = {k: d.pop(k) for k in list(d) if k in known}
        return cls(**kw, extra=d)

    def to_dict(self) -> dict:
        d = dict(self.extra)
        d.update({k: v for k, v in asdict(self).items() if k not in ("extra", "add_pooling_layer")})
        d["model_type"] = "bert"
        d.setdefault("architectures", ["BertModel"])
        d["position_embedding_type"] = "absolute"
        return d


# ---------------------------------------------------------------------------------------------
def _grad(p: Parameter) -> np.ndarray:
    """p.grad, allocated as zeros on first use (gradients accumulate into it)."""
    if p.grad is None:
        p.grad = np.zeros_like(p.data)
    return p.grad


def _normal(rng, std, shape):
    """N(0, std) initial weights; zeros when rng is None (weights about to be loaded)."""
    if rng is None:
        return np.zeros(shape, _F32)
    return rng.normal(0.0, std, shape).astype(_F32)


class Linear(Module):
    def __init__(self, n_in: int, n_out: int, rng, std: float):
        super().__init__()
        self.weight = Parameter(_normal(rng, std, (n_out, n_in)))
        self.bias = Parameter(np.zeros(n_out, _F32))

    def forward(self, x):                                  # x (N, in) -> (N, out)
        return K.linear(x, self.weight.data, self.bias.data)

    def backward(self, dy, x, need_dx=True):
        return K.linear_backward(dy, x, self.weight.data, _grad(self.weight), _grad(self.bias),
                                 need_dx)


class LayerNorm(Module):
    def __init__(self, n: int, eps: float):
        super().__init__()
        self.weight = Parameter(np.ones(n, _F32))
        self.bias = Parameter(np.zeros(n, _F32))
        self.eps = eps

    def forward(self, x):                                  # x (N, C) -> out, (x, mean, rstd)
        out, mean, rstd = K.layernorm_forward(x, self.weight.data, self.bias.data, self.eps)
        return out, (x, mean, rstd)

    def backward(self, dout, cache):
        x, mean, rstd = cache
        return K.layernorm_backward(dout, x, mean, rstd, self.weight.data,
                                    _grad(self.weight), _grad(self.bias))


class Embedding(Module):
    def __init__(self, n: int, dim: int, rng, std: float):
        super().__init__()
        self.weight = Parameter(_normal(rng, std, (n, dim)))


# ---------------------------------------------------------------------------------------------
class BertEmbeddings(Module):
    """word + position + token-type embeddings, then LayerNorm."""

    def __init__(self, cfg: BERTConfig, rng):
        super().__init__()
        std = cfg.initializer_range
        self.word_embeddings = Embedding(cfg.vocab_size, cfg.hidden_size, rng, std)
        self.position_embeddings = Embedding(cfg.max_position_embeddings, cfg.hidden_size, rng, std)
        self.token_type_embeddings = Embedding(cfg.type_vocab_size, cfg.hidden_size, rng, std)
        self.LayerNorm = LayerNorm(cfg.hidden_size, cfg.layer_norm_eps)

    def forward(self, ids, type_ids):                      # ids, type_ids (B, T) -> (B*T, C)
        b, t = ids.shape
        x = K.embedding_forward(ids.reshape(-1), self.word_embeddings.weight.data)
        x = x.reshape(b, t, -1)
        x += self.position_embeddings.weight.data[:t][None]
        x = x.reshape(b * t, -1)
        K.add_(x, K.embedding_forward(type_ids.reshape(-1), self.token_type_embeddings.weight.data))
        out, ln_cache = self.LayerNorm.forward(x)
        return out, (ids, type_ids, ln_cache)

    def forward_packed(self, ids, type_ids, packed):     # -> (N real tokens, C)
        rows, _, ti = packed
        wid, tid = ids.reshape(-1)[rows], type_ids.reshape(-1)[rows]
        x = K.embedding_forward(wid, self.word_embeddings.weight.data)
        K.add_(x, K.embedding_forward(ti, self.position_embeddings.weight.data))
        K.add_(x, K.embedding_forward(tid, self.token_type_embeddings.weight.data))
        out, ln_cache = self.LayerNorm.forward(x)
        return out, (wid, tid, ti, ln_cache)

    def backward_packed(self, dout, cache):
        wid, tid, ti, ln_cache = cache
        dx = self.LayerNorm.backward(dout, ln_cache)
        K.embedding_backward(dx, wid, _grad(self.word_embeddings.weight))
        K.embedding_backward(dx, ti, _grad(self.position_embeddings.weight))
        K.embedding_backward(dx, tid, _grad(self.token_type_embeddings.weight))

    def backward(self, dout, cache):
        ids, type_ids, ln_cache = cache
        b, t = ids.shape
        dx = self.LayerNorm.backward(dout, ln_cache)
        K.embedding_backward(dx, ids.reshape(-1), _grad(self.word_embeddings.weight))
        K.embedding_backward(dx, type_ids.reshape(-1), _grad(self.token_type_embeddings.weight))
        _grad(self.position_embeddings.weight)[:t] += dx.reshape(b, t, -1).sum(axis=0, dtype=_F32)


class _SelfAttention(Module):
    def __init__(self, cfg, rng):
        super().__init__()
        c, std = cfg.hidden_size, cfg.initializer_range
        self.query = Linear(c, c, rng, std)
        self.key = Linear(c, c, rng, std)
        self.value = Linear(c, c, rng, std)


class _Output(Module):                                     # dense -> (+ residual) -> LayerNorm
    def __init__(self, n_in, n_out, cfg, rng):
        super().__init__()
        self.dense = Linear(n_in, n_out, rng, cfg.initializer_range)
        self.LayerNorm = LayerNorm(n_out, cfg.layer_norm_eps)


class _Attention(Module):
    def __init__(self, cfg, rng):
        super().__init__()
        self.self = _SelfAttention(cfg, rng)
        self.output = _Output(cfg.hidden_size, cfg.hidden_size, cfg, rng)


class _Intermediate(Module):
    def __init__(self, cfg, rng):
        super().__init__()
        self.dense = Linear(cfg.hidden_size, cfg.intermediate_size, rng, cfg.initializer_range)


class BertLayer(Module):
    """Post-LayerNorm block: h = LN(x + Attn(x)); out = LN(h + W2 gelu(W1 h))."""

    def __init__(self, cfg: BERTConfig, rng):
        super().__init__()
        self.attention = _Attention(cfg, rng)
        self.intermediate = _Intermediate(cfg, rng)
        self.output = _Output(cfg.intermediate_size, cfg.hidden_size, cfg, rng)
        self.nh, self.hs = cfg.num_attention_heads, cfg.head_size
        self.gelu = cfg._SUPPORTED_ACTS[cfg.hidden_act]     # 'none' (erf) or 'tanh'

    def _qkv_weight(self):
        s = self.attention.self
        w = np.concatenate([s.query.weight.data, s.key.weight.data, s.value.weight.data])
        b = np.concatenate([s.query.bias.data, s.key.bias.data, s.value.bias.data])
        return w, b

    def forward(self, x, b, t, key_mask, keep: bool, packed=None):
        """x (B*T, C) -> (B*T, C).  ``packed`` = (rows, bi, ti) (inference only): x holds just
        the N real tokens (N, C) (rows = their flat indices in B*T, bi/ti = batch / position)
        so every per-token op skips the padding; attention runs on the padded layout."""
        nh, hs = self.nh, self.hs
        wqkv, bqkv = self._qkv_weight()
        qkv = K.linear(x, wqkv, bqkv)                      # (B*T, 3C), one GEMM for q, k, v
        if packed is not None:                             # scatter real tokens, pads = 0
            full = np.zeros((b * t, qkv.shape[1]), _F32)
            full[packed[0]] = qkv
            qkv = full
        qkv4 = qkv.reshape(b, t, 3, nh, hs)
        q, k, v = (qkv4[:, :, i].transpose(0, 2, 1, 3) for i in range(3))   # (B, NH, T, HS)
        y, lse = K.attention_forward(q, k, v, key_mask=key_mask)
        if packed is not None:                             # gather real tokens: (N, NH, HS)
            y2 = y[packed[1], :, packed[2], :].reshape(len(packed[0]), nh * hs)
        else:
            y2 = np.ascontiguousarray(y.transpose(0, 2, 1, 3)).reshape(b * t, nh * hs)
        a = self.attention.output.dense.forward(y2)
        K.add_(a, x)                                       # residual
        h, ln1 = self.attention.output.LayerNorm.forward(a)
        u = self.intermediate.dense.forward(h)
        g = K.gelu_forward(u, self.gelu)
        o = self.output.dense.forward(g)
        K.add_(o, h)                                       # residual
        out, ln2 = self.output.LayerNorm.forward(o)
        cache = (x, qkv, q, k, v, y, lse, y2, ln1, h, u, g, ln2, b, t, key_mask, packed) \
            if keep else None
        return out, cache

    def backward(self, dout, cache):
        x, qkv, q, k, v, y, lse, y2, ln1, h, u, g, ln2, b, t, key_mask, packed = cache
        nh, hs = self.nh, self.hs
        do = self.output.LayerNorm.backward(dout, ln2)      # out = LN(o)
        dg = self.output.dense.backward(do, g)              # o = dense(g) + h
        du = K.gelu_backward(dg, u, self.gelu)              # g = gelu(u)
        dh = self.intermediate.dense.backward(du, h)        # u = dense(h)
        K.add_(dh, do)                                      # residual into h
        da = self.attention.output.LayerNorm.backward(dh, ln1)   # h = LN(a)
        dy2 = self.attention.output.dense.backward(da, y2)  # a = dense(y2) + x
        if packed is not None:                              # y2 = gather(y): scatter back
            dy = np.zeros((b, nh, t, hs), _F32)
            dy[packed[1], :, packed[2], :] = dy2.reshape(-1, nh, hs)
        else:
            dy = dy2.reshape(b, t, nh, hs).transpose(0, 2, 1, 3)
        dq, dk, dv = K.attention_backward(dy, q, k, v, y, lse, key_mask=key_mask)
        n = x.shape[0]
        dqkv = np.empty((n, 3, nh, hs) if packed is not None else (b, t, 3, nh, hs), _F32)
        for i, d in enumerate((dq, dk, dv)):                # qkv = x wqkv^T + bqkv
            if packed is not None:                          # (scattered: gather real rows)
                dqkv[:, i] = d[packed[1], :, packed[2], :]
            else:
                dqkv[:, :, i] = d.transpose(0, 2, 1, 3)
        dqkv = dqkv.reshape(n, 3 * nh * hs)
        s = self.attention.self
        c = nh * hs
        wqkv, _ = self._qkv_weight()
        dbqkv = np.zeros(3 * c, _F32)
        dx = K.linear_backward(dqkv, x, wqkv, None, dbqkv)  # one GEMM for dx
        for i, lin in enumerate((s.query, s.key, s.value)):
            K.linear_backward(dqkv[:, i * c:(i + 1) * c], x, None, _grad(lin.weight), None,
                              need_dx=False)
            _grad(lin.bias)[...] += dbqkv[i * c:(i + 1) * c]
        K.add_(dx, da)                                      # residual into x
        return dx


class _Encoder(Module):
    def __init__(self, cfg, rng):
        super().__init__()
        self.layer = ModuleList([BertLayer(cfg, rng) for _ in range(cfg.num_hidden_layers)])


class _Pooler(Module):
    def __init__(self, cfg, rng):
        super().__init__()
        self.dense = Linear(cfg.hidden_size, cfg.hidden_size, rng, cfg.initializer_range)


# ---------------------------------------------------------------------------------------------
class _BertFunction(Function):
    """The whole encoder as one autograd node: forward keeps the per-layer caches, backward
    runs the hand-written backward, which accumulates straight into every Parameter.grad
    (the anchor input is the word-embedding matrix, so the node is tracked whenever the
    model's parameters require gradients)."""

    def forward(self, anchor, *, model, ids, type_ids, mask, return_pooled):
        hidden, pooled, self.cache = model.run(ids, mask, type_ids, return_pooled=return_pooled,
                                               keep_for_backward=True)
        self.model = model
        return (hidden, pooled) if return_pooled else hidden

    def backward(self, d_hidden, d_pooled=None):
        self.model.run_backward(self.cache, d_hidden, d_pooled)
        return None


class BERT(Module):
    """The BERT encoder.  ``model(input_ids, attention_mask=None, token_type_ids=None)`` ->
    last hidden state (B, T, hidden) as a ``Tensor``; ``return_pooled=True`` also returns
    the pooler output (B, hidden) = tanh(dense(h[:, 0])).  With gradients enabled the result
    is part of the autograd graph (``loss.backward()`` fills every parameter's ``.grad``).
    ``run(...)`` is the numpy-level entry point (no autograd; used by the encoders)."""

    # With an attention mask, every per-token op (GEMMs, GELU, LayerNorm, embeddings) runs on
    # the real tokens only; attention alone sees the padded layout.  Padded positions of the
    # returned hidden state are zeros.  False: the plain padded computation (same results).
    pack_padding = True

    def __init__(self, config: BERTConfig, seed: int | None = 0):
        super().__init__()
        self.config = config
        rng = None if seed is None else np.random.default_rng(seed)   # None: zeros (loading)
        self.embeddings = BertEmbeddings(config, rng)
        self.encoder = _Encoder(config, rng)
        self.pooler = _Pooler(config, rng) if config.add_pooling_layer else None

    def load_state_dict(self, state_dict, strict: bool = True):
        """Load HF-named arrays; an optional 'bert.' prefix is stripped and buffers such as
        embeddings.position_ids are ignored.  Returns (missing, unexpected)."""
        clean = {}
        for k, v in state_dict.items():
            k2 = k[5:] if k.startswith("bert.") else k
            if k2.endswith("position_ids") or k2.endswith("token_type_ids"):
                continue
            clean[k2] = v
        try:
            return super().load_state_dict(clean, strict=strict)
        except RuntimeError as e:
            raise ValueError(f"BERT.load_state_dict: {e}") from None

    # -- forward / backward -----------------------------------------------------------------
    def _check_inputs(self, input_ids, attention_mask, token_type_ids):
        ids = input_ids.data if isinstance(input_ids, Tensor) else np.asarray(input_ids)
        if ids.ndim == 1:
            ids = ids[None]
        if ids.ndim != 2 or not (np.issubdtype(ids.dtype, np.integer) or
                                 (ids.size and np.all(ids == np.round(ids)))):
            raise ValueError(f"BERT: input_ids must be an integer array (B, T), got "
                             f"{ids.dtype} {ids.shape}")
        ids = ids.astype(np.int64, copy=False)
        b, t = ids.shape
        cfg = self.config
        if t > cfg.max_position_embeddings:
            raise ValueError(f"BERT: sequence length {t} exceeds max_position_embeddings "
                             f"{cfg.max_position_embeddings}")
        if ids.size and (ids.min() < 0 or ids.max() >= cfg.vocab_size):
            bad = int(ids.max() if ids.max() >= cfg.vocab_size else ids.min())
            raise IndexError(f"BERT: token id {bad} out of range for vocab_size {cfg.vocab_size}")
        if token_type_ids is None:
            tt = np.zeros_like(ids)
        else:
            tt = np.asarray(token_type_ids).reshape(ids.shape).astype(np.int64)
            if tt.size and (tt.min() < 0 or tt.max() >= cfg.type_vocab_size):
                raise IndexError(f"BERT: token type id out of range for type_vocab_size "
                                 f"{cfg.type_vocab_size}")
        mask = None
        if attention_mask is not None:
            m = attention_mask.data if isinstance(attention_mask, Tensor) else attention_mask
            mask = (np.asarray(m).reshape(ids.shape) != 0).astype(np.uint8)
            if mask.all():
                mask = None                              # nothing padded: skip masking work
        return ids, tt, mask

    def run(self, input_ids, attention_mask=None, token_type_ids=None,
            return_pooled: bool = False, keep_for_backward: bool = False):
        """numpy in, numpy out: (hidden (B, T, C), pooled (B, C) or None, cache or None)."""
        ids, tt, mask = self._check_inputs(input_ids, attention_mask, token_type_ids)
        b, t = ids.shape
        packed = None
        if mask is not None and self.pack_padding:        # per-token work skips padding
            rows = np.flatnonzero(mask.reshape(-1))
            packed = (rows, rows // t, rows % t)
            x, emb_cache = self.embeddings.forward_packed(ids, tt, packed)
        else:
            x, emb_cache = self.embeddings.forward(ids, tt)
        caches = []
        for layer in self.encoder.layer:
            x, c = layer.forward(x, b, t, mask, keep_for_backward, packed)
            caches.append(c)
        if packed is not None:                             # padded positions: zeros
            full = np.zeros((b * t, x.shape[1]), _F32)
            full[packed[0]] = x
            x = full
        hidden = x.reshape(b, t, -1)
        emb_cache = (emb_cache, packed)
        pooled = None
        if return_pooled:
            if self.pooler is None:
                raise ValueError("BERT: this model has no pooler (add_pooling_layer=False)")
            cls = np.ascontiguousarray(hidden[:, 0])
            pooled = K.tanh_forward(self.pooler.dense.forward(cls))
        cache = (emb_cache, caches, b, t, hidden, pooled) if keep_for_backward else None
        return hidden, pooled, cache

    def run_backward(self, cache, d_hidden=None, d_pooled=None):
        """Backpropagate d loss / d hidden (B, T, C) and / or d pooled (B, C) through the
        ``run(..., keep_for_backward=True)`` that returned ``cache``; parameter gradients
        accumulate into ``.grad``."""
        emb_cache, caches, b, t, hidden, pooled = cache
        c = self.config.hidden_size
        dx = (np.zeros((b * t, c), _F32) if d_hidden is None
              else np.array(d_hidden, dtype=_F32).reshape(b * t, c))
        if d_pooled is not None:
            dz = K.tanh_backward(np.ascontiguousarray(d_pooled, dtype=_F32), pooled)  # pooled = tanh(z)
            cls = np.ascontiguousarray(hidden[:, 0])
            dcls = self.pooler.dense.backward(dz, cls)
            dx.reshape(b, t, c)[:, 0] += dcls
        emb_cache, packed = emb_cache
        if packed is not None:                              # hidden = scatter(x): gather
            dx = dx[packed[0]]
        for layer, lc in zip(reversed(self.encoder.layer), reversed(caches)):
            dx = layer.backward(dx, lc)
        if packed is not None:
            self.embeddings.backward_packed(dx, emb_cache)
        else:
            self.embeddings.backward(dx, emb_cache)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None,
                return_pooled: bool = False):
        anchor = self.embeddings.word_embeddings.weight
        if autograd.is_grad_enabled() and anchor.requires_grad:
            ids, tt, mask = self._check_inputs(input_ids, attention_mask, token_type_ids)
            return _BertFunction.apply(anchor, model=self, ids=ids, type_ids=tt, mask=mask,
                                       return_pooled=return_pooled)
        hidden, pooled, _ = self.run(input_ids, attention_mask, token_type_ids, return_pooled)
        return (Tensor(hidden), Tensor(pooled)) if return_pooled else Tensor(hidden)

    # -- checkpoints --------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path) -> "BERT":
        """Load a Hugging Face BERT directory (config.json + model.safetensors)."""
        from safetensors.numpy import load_file
        path = Path(path)
        cfg_path, w_path = path / "config.json", path / "model.safetensors"
        if not cfg_path.is_file():
            raise FileNotFoundError(f"BERT.from_pretrained: no config.json in {path}")
        if not w_path.is_file():
            hint = (" (only pytorch_model.bin found; convert it to safetensors)"
                    if (path / "pytorch_model.bin").exists() else "")
            raise FileNotFoundError(f"BERT.from_pretrained: no model.safetensors in {path}{hint}")
        cfg_dict = json.loads(cfg_path.read_text())
        sd = load_file(str(w_path))
        has_pooler = any(k.endswith("pooler.dense.weight") for k in sd)
        cfg = BERTConfig.from_dict(cfg_dict)
        cfg.add_pooling_layer = has_pooler
        model = cls(cfg, seed=None)
        model.load_state_dict(sd, strict=True)
        return model

    def save_pretrained(self, path) -> None:
        """Write config.json + model.safetensors loadable by ``transformers.BertModel``."""
        from safetensors.numpy import save_file
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / "config.json").write_text(json.dumps(self.config.to_dict(), indent=2))
        sd = {k: np.ascontiguousarray(v) for k, v in self.state_dict().items()}
        save_file(sd, str(path / "model.safetensors"), metadata={"format": "pt"})
