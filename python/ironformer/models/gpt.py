"""GPT-2 style decoder on ironformer's nn / autograd / ops.

Reads like nanoGPT: a config dataclass, ``CausalSelfAttention``, ``MLP``, ``Block``, ``GPT``.
Parameter names are the Hugging Face GPT-2 keys (``transformer.wte``, ``transformer.h.0.attn.c_attn``,
..., ``transformer.ln_f``; ``lm_head`` is tied to ``transformer.wte``), so loading and saving a
checkpoint is a rename-free copy (HF stores its Conv1D weights as (in, out): those four are
transposed into our (out, in) ``Linear`` layout, see :mod:`ironformer.hub`).

Training runs through autograd (``logits, loss = model(idx, targets)``; ``loss.backward()``).
Generation (:meth:`GPT.generate`, :meth:`GPT.generate_stream`) bypasses autograd and calls the
ops kernels directly on the weights, with a per-layer KV cache: one query row per new token.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Iterator, Optional

import numpy as np

from .. import nn, ops
from ..nn import functional as F

__all__ = ["GPTConfig", "GPT"]


@dataclass
class GPTConfig:
    vocab_size: int = 50257      # GPT-2's byte-level BPE; a char model uses its alphabet size
    block_size: int = 1024       # longest context (learned position embeddings)
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0         # embeddings, attention output and MLP output (training only)
    bias: bool = True            # biases in Linear and LayerNorm layers (GPT-2: True)
    layer_norm_epsilon: float = 1e-5

    def __post_init__(self):
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"GPTConfig.{name} must be a positive int, got {v!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"GPTConfig: n_embd ({self.n_embd}) must be divisible by "
                             f"n_head ({self.n_head})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"GPTConfig.dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict:
        return asdict(self)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        B, T, C = x.shape
        nh, hs = self.n_head, C // self.n_head
        q, k, v = self.c_attn(x).split(C, dim=2)                        # 3 x (B, T, C)
        q = q.reshape(B, T, nh, hs).transpose(1, 2)                      # (B, nh, T, hs)
        k = k.reshape(B, T, nh, hs).transpose(1, 2)
        v = v.reshape(B, T, nh, hs).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)     # fused kernel
        y = y.transpose(1, 2).reshape(B, T, C)
        y = self.c_proj(y)
        return self.resid_dropout(y) if self.dropout > 0 else y


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = config.dropout
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x):
        x = self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))
        return self.drop(x) if self.dropout > 0 else x


class Block(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        eps = config.layer_norm_epsilon
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=eps, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=eps, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        x = x + self.mlp(self.ln_2(x))
        return x


class Transformer(nn.Module):
    """The ``transformer.*`` part of the Hugging Face ``GPT2LMHeadModel``."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.dropout = config.dropout
        self.drop = nn.Dropout(config.dropout)
        self.h = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon, bias=config.bias)


class GPT(nn.Module):
    """GPT-2: learned positions, pre-LayerNorm blocks, tanh-GELU MLP, tied input/output embedding."""

    def __init__(self, config: GPTConfig, seed: Optional[int] = None, init_weights: bool = True):
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise TypeError(f"GPT: config must be a GPTConfig, got {type(config).__name__}")
        self.config = config
        self.transformer = Transformer(config)
        if init_weights:                          # skipped when a checkpoint overwrites every weight
            self._init_weights(seed)

    # ---- parameters -------------------------------------------------------------------------
    def _init_weights(self, seed: Optional[int]) -> None:
        """GPT-2 init: N(0, 0.02) weights, zero biases, LayerNorm 1/0, residual c_proj N(0, 0.02/sqrt(2L))."""
        rng = np.random.default_rng(seed)
        proj_std = 0.02 / math.sqrt(2 * self.config.n_layer)
        for name, p in self.named_parameters():
            shape = tuple(p.shape)
            if name.endswith(".bias"):
                val = np.zeros(shape, np.float32)
            elif ".ln_" in name or name.startswith("transformer.ln_f"):
                val = np.ones(shape, np.float32)
            else:
                std = proj_std if name.endswith("c_proj.weight") else 0.02
                val = rng.normal(0.0, std, size=shape).astype(np.float32)
            _assign(p, val)

    def num_parameters(self, non_embedding: bool = False) -> int:
        n = sum(int(np.prod(p.shape)) for p in self.parameters())
        if non_embedding:
            n -= int(np.prod(self.transformer.wpe.weight.shape))
        return n

    def arrays(self) -> dict:
        """``{name: float32 numpy array}`` of every parameter (copies), in the model's order."""
        return {name: np.array(_array(p), dtype=np.float32, copy=True)
                for name, p in self.named_parameters()}

    def load_arrays(self, arrays: dict, strict: bool = True) -> None:
        """Copy ``{name: array}`` into the parameters (shapes must match; missing/extra keys raise)."""
        params = dict(self.named_parameters())
        if strict:
            missing = sorted(set(params) - set(arrays))
            extra = sorted(set(arrays) - set(params))
            if missing or extra:
                raise KeyError(f"GPT.load_arrays: missing keys {missing[:5]}, unexpected keys {extra[:5]}")
        for name, arr in arrays.items():
            if name not in params:
                continue
            p = params[name]
            arr = np.asarray(arr)
            if tuple(arr.shape) != tuple(p.shape):
                raise ValueError(f"GPT.load_arrays: {name} has shape {tuple(arr.shape)}, "
                                 f"the model expects {tuple(p.shape)}")
            _assign(p, np.ascontiguousarray(arr, dtype=np.float32))

    # ---- training forward ---------------------------------------------------------------------
    def forward(self, idx, targets=None):
        """``idx`` int array (B, T) -> ``(logits (B, T, V) Tensor, loss or None)``."""
        idx = _check_ids(idx, self.config, "idx")
        B, T = idx.shape
        if T > self.config.block_size:
            raise ValueError(f"GPT.forward: sequence length {T} exceeds block_size "
                             f"{self.config.block_size}")
        tr = self.transformer
        x = tr.wte(idx) + tr.wpe(np.arange(T, dtype=np.int64))
        if tr.dropout > 0:
            x = tr.drop(x)
        for block in tr.h:
            x = block(x)
        x = tr.ln_f(x)
        logits = F.linear(x, tr.wte.weight)                              # tied lm_head
        loss = None
        if targets is not None:
            targets = np.asarray(targets)
            if targets.shape != (B, T):
                raise ValueError(f"GPT.forward: targets must have shape {(B, T)}, got {targets.shape}")
            V = self.config.vocab_size
            loss = F.cross_entropy(logits.reshape(B * T, V),
                                   np.ascontiguousarray(targets.reshape(B * T), dtype=np.int64))
        return logits, loss

    # ---- checkpoints -------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path, **overrides) -> "GPT":
        """Load a Hugging Face GPT-2 checkpoint directory (config.json + safetensors)."""
        from ..hub import load_gpt2_pretrained
        return load_gpt2_pretrained(cls, path, **overrides)

    def save_pretrained(self, path) -> None:
        """Write config.json + model.safetensors in the Hugging Face GPT-2 layout."""
        from ..hub import save_gpt2_pretrained
        save_gpt2_pretrained(self, path)

    # ---- generation (no autograd: kernels on the raw weights, KV cache) ----------------------
    def generate(self, idx, max_new_tokens: int, temperature: float = 1.0,
                 top_k: Optional[int] = None, top_p: Optional[float] = None,
                 eos_token_id: Optional[int] = None, seed: Optional[int] = None) -> np.ndarray:
        """Continue ``idx`` (B, T) by up to ``max_new_tokens`` tokens -> int64 array (B, T + new).

        ``temperature=0`` is greedy. ``top_k`` keeps the k most likely tokens, ``top_p`` the
        smallest set whose probability reaches p. With ``eos_token_id`` a finished row is
        padded with it and generation stops early once every row has finished.
        """
        idx = _check_ids(idx, self.config, "idx")
        new = list(self.generate_stream(idx, max_new_tokens, temperature=temperature, top_k=top_k,
                                        top_p=top_p, eos_token_id=eos_token_id, seed=seed))
        if not new:
            return idx.astype(np.int64, copy=True)
        return np.concatenate([idx.astype(np.int64), np.stack(new, axis=1)], axis=1)

    def generate_stream(self, idx, max_new_tokens: int, temperature: float = 1.0,
                        top_k: Optional[int] = None, top_p: Optional[float] = None,
                        eos_token_id: Optional[int] = None,
                        seed: Optional[int] = None) -> Iterator[np.ndarray]:
        """Like :meth:`generate` but yields each step's new tokens, an int64 array (B,)."""
        idx = _check_ids(idx, self.config, "idx")
        if isinstance(max_new_tokens, bool) or int(max_new_tokens) != max_new_tokens or max_new_tokens < 0:
            raise ValueError(f"generate: max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
        if temperature < 0:
            raise ValueError(f"generate: temperature must be >= 0, got {temperature}")
        if top_k is not None and top_k < 1:
            raise ValueError(f"generate: top_k must be >= 1, got {top_k}")
        if top_p is not None and not 0.0 < top_p <= 1.0:
            raise ValueError(f"generate: top_p must be in (0, 1], got {top_p}")
        if idx.shape[1] == 0:
            raise ValueError("generate: the prompt must hold at least one token")
        return self._stream(idx, int(max_new_tokens), temperature, top_k, top_p, eos_token_id, seed)

    def _stream(self, idx, max_new_tokens, temperature, top_k, top_p, eos_token_id, seed):
        rng = np.random.default_rng(seed)
        dec = _Decoder(self)
        bs = self.config.block_size
        seq = idx.astype(np.int64)
        B = seq.shape[0]
        finished = np.zeros(B, dtype=bool)
        dec.capacity = min(bs, min(seq.shape[1], bs) + max_new_tokens)
        logits = dec.prefill(seq[:, -bs:])
        for step in range(max_new_tokens):
            tok = _sample(logits, temperature, top_k, top_p, rng)
            if eos_token_id is not None:
                tok = np.where(finished, eos_token_id, tok)
                finished |= tok == eos_token_id
            yield tok
            if step + 1 == max_new_tokens or (eos_token_id is not None and finished.all()):
                return
            seq = np.concatenate([seq, tok[:, None]], axis=1)
            if dec.length < dec.capacity:
                logits = dec.step(tok)
            else:                               # cache full: crop to the last block_size tokens
                logits = dec.prefill(seq[:, -bs:])


# ---- helpers -------------------------------------------------------------------------------------
def _array(p) -> np.ndarray:
    """The numpy array behind a parameter (shared memory, no copy)."""
    return p.data


def _assign(p, value: np.ndarray) -> None:
    """Copy ``value`` into the parameter's array in place (views, e.g. an optimizer's flat buffer, stay valid)."""
    ops.copy_(p.data, np.ascontiguousarray(value, dtype=np.float32))


def _check_ids(idx, config: GPTConfig, name: str) -> np.ndarray:
    if hasattr(idx, "numpy") and not isinstance(idx, np.ndarray):
        idx = idx.numpy()
    idx = np.asarray(idx)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"GPT: {name} must hold integer token ids, got dtype {idx.dtype}")
    if idx.ndim != 2:
        raise ValueError(f"GPT: {name} must have shape (B, T), got {idx.shape}")
    if idx.size and (idx.min() < 0 or idx.max() >= config.vocab_size):
        bad = int(idx.max() if idx.max() >= config.vocab_size else idx.min())
        raise IndexError(f"GPT: token id {bad} out of range for vocab_size {config.vocab_size}")
    return idx


def _softmax_rows(x: np.ndarray) -> np.ndarray:
    return ops.softmax_forward(np.ascontiguousarray(x, dtype=np.float32))


def _sample(logits: np.ndarray, temperature: float, top_k, top_p, rng) -> np.ndarray:
    """logits (B, V) float32 -> token ids (B,) int64."""
    if temperature == 0:
        return np.argmax(logits, axis=-1).astype(np.int64)
    logits = logits / np.float32(temperature)
    V = logits.shape[-1]
    if top_k is not None and top_k < V:
        kth = np.partition(logits, V - top_k, axis=-1)[:, V - top_k][:, None]
        logits = np.where(logits < kth, -np.inf, logits).astype(np.float32)
    probs = _softmax_rows(logits).astype(np.float64)
    if top_p is not None and top_p < 1.0:
        order = np.argsort(-probs, axis=-1, kind="stable")
        sorted_p = np.take_along_axis(probs, order, axis=-1)
        cum = np.cumsum(sorted_p, axis=-1)
        drop_sorted = (cum - sorted_p) >= top_p               # keep the smallest prefix reaching p
        drop = np.zeros_like(drop_sorted)
        np.put_along_axis(drop, order, drop_sorted, axis=-1)
        probs = np.where(drop, 0.0, probs)
    probs /= probs.sum(axis=-1, keepdims=True)
    u = rng.random(probs.shape[0])
    cdf = np.cumsum(probs, axis=-1)
    tok = (cdf < u[:, None]).sum(axis=-1)
    return np.minimum(tok, probs.shape[-1] - 1).astype(np.int64)


class _Decoder:
    """Inference-only forward with a KV cache, straight on the weights (no autograd graph).

    Cache per layer: K and V arrays (B, nh, block_size, hs); ``prefill`` runs the prompt (causal
    attention over it), ``step`` appends one token per row and attends one query row to the cache.
    """

    def __init__(self, model: GPT):
        cfg = model.config
        self.cfg = cfg
        self.nh, self.C = cfg.n_head, cfg.n_embd
        self.hs = cfg.n_embd // cfg.n_head
        self.eps = cfg.layer_norm_epsilon
        W = {name: _array(p) for name, p in model.named_parameters()}
        self.wte = W["transformer.wte.weight"]
        self.wpe = W["transformer.wpe.weight"]
        self.ln_f = (W["transformer.ln_f.weight"], W.get("transformer.ln_f.bias"))
        self.layers = []
        for i in range(cfg.n_layer):
            p = f"transformer.h.{i}."
            g = lambda k: W.get(p + k)  # noqa: E731
            self.layers.append(dict(
                ln_1=(g("ln_1.weight"), g("ln_1.bias")), ln_2=(g("ln_2.weight"), g("ln_2.bias")),
                c_attn=(g("attn.c_attn.weight"), g("attn.c_attn.bias")),
                attn_proj=(g("attn.c_proj.weight"), g("attn.c_proj.bias")),
                c_fc=(g("mlp.c_fc.weight"), g("mlp.c_fc.bias")),
                mlp_proj=(g("mlp.c_proj.weight"), g("mlp.c_proj.bias"))))
        self.k = self.v = None
        self.length = 0
        self.capacity = cfg.block_size

    def _ln(self, x, wb):
        return ops.layernorm_forward(x, wb[0], wb[1], self.eps)[0]

    @staticmethod
    def _linear(x, wb):
        w, b = wb
        return ops.matmul(x, w, trans_b=True, bias=b)

    def _forward(self, ids: np.ndarray, pos0: int) -> np.ndarray:
        """ids (B, T) at positions pos0.. -> logits of the last position (B, V); fills the cache."""
        B, T = ids.shape
        nh, hs, C = self.nh, self.hs, self.C
        pos = np.broadcast_to(np.arange(pos0, pos0 + T, dtype=np.int64), (B, T))
        x = ops.embedding_forward(ids.reshape(B * T), self.wte)
        x = ops.add(x, ops.embedding_forward(pos.reshape(B * T), self.wpe), out=x)   # (B*T, C)
        end = pos0 + T
        for li, L in enumerate(self.layers):
            h = self._ln(x, L["ln_1"])
            qkv = self._linear(h, L["c_attn"]).reshape(B, T, 3, nh, hs)
            kc, vc = self.k[li], self.v[li]
            kc[:, :, pos0:end] = qkv[:, :, 1].transpose(0, 2, 1, 3)
            vc[:, :, pos0:end] = qkv[:, :, 2].transpose(0, 2, 1, 3)
            q = qkv[:, :, 0].transpose(0, 2, 1, 3)                       # (B, nh, T, hs) strided
            y, _ = ops.attention_forward(q, kc[:, :, :end], vc[:, :, :end], causal=True)
            y = np.ascontiguousarray(y.transpose(0, 2, 1, 3)).reshape(B * T, C)
            x = ops.add(x, self._linear(y, L["attn_proj"]), out=x)
            h = self._ln(x, L["ln_2"])
            h = ops.gelu_forward(self._linear(h, L["c_fc"]), approximate="tanh")
            x = ops.add(x, self._linear(h, L["mlp_proj"]), out=x)
        last = np.ascontiguousarray(x.reshape(B, T, C)[:, -1])
        last = self._ln(last, self.ln_f)
        return ops.matmul(last, self.wte, trans_b=True)                 # (B, V)

    def prefill(self, ids: np.ndarray) -> np.ndarray:
        B = ids.shape[0]
        # only positions < length are ever read, so the cache need not be zeroed
        shape = (B, self.nh, max(self.capacity, ids.shape[1]), self.hs)
        if self.k is None or self.k[0].shape != shape:
            self.k = [np.empty(shape, np.float32) for _ in self.layers]
            self.v = [np.empty(shape, np.float32) for _ in self.layers]
        out = self._forward(ids, 0)
        self.length = ids.shape[1]
        return out

    def step(self, tok: np.ndarray) -> np.ndarray:
        out = self._forward(tok.reshape(-1, 1), self.length)
        self.length += 1
        return out
