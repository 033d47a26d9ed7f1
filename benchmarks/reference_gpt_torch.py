"""PyTorch reference GPT (same architecture, init, data, batches, schedule) for benchmarks.

Used by benchmarks/bench_gpt.py and ``ironformer bench``:

* ``TorchGPT(cfg)``: GPT-2 (learned positions, pre-LN, tanh GELU, tied lm_head) in eager PyTorch,
  parameter names as ironformer's / Hugging Face's (Linear layout (out, in)).
* ``from_ironformer(model)``: copy an ironformer GPT's weights (identical init for fair runs).
* ``train_reference(cfg)``: the ironformer.train recipe (same tokenizer, .bin split, batch RNG,
  warmup+cosine lr, AdamW param groups, clipping, eval RNG) in PyTorch; returns final losses.
* ``time_train_step`` / ``generate_kv``: speed baselines (fused AdamW; KV-cache decoding).

Run directly for the quality comparison: ``python benchmarks/reference_gpt_torch.py --max-iters 2000``.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class Attn(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.n_head = c.n_head
        self.c_attn = nn.Linear(c.n_embd, 3 * c.n_embd, bias=c.bias)
        self.c_proj = nn.Linear(c.n_embd, c.n_embd, bias=c.bias)
        self.dropout = c.dropout

    def forward(self, x, cache=None, pos=0):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        if cache is not None:
            kc, vc = cache
            kc[:, :, pos:pos + T] = k
            vc[:, :, pos:pos + T] = v
            k, v = kc[:, :, :pos + T], vc[:, :, :pos + T]
            y = F.scaled_dot_product_attention(q, k, v, is_causal=(T > 1))
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                               dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return F.dropout(self.c_proj(y), self.dropout, self.training)


class MLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c_fc = nn.Linear(c.n_embd, 4 * c.n_embd, bias=c.bias)
        self.c_proj = nn.Linear(4 * c.n_embd, c.n_embd, bias=c.bias)
        self.dropout = c.dropout

    def forward(self, x):
        return F.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")), self.dropout, self.training)


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.ln_1 = nn.LayerNorm(c.n_embd, eps=c.layer_norm_epsilon, bias=c.bias)
        self.attn = Attn(c)
        self.ln_2 = nn.LayerNorm(c.n_embd, eps=c.layer_norm_epsilon, bias=c.bias)
        self.mlp = MLP(c)

    def forward(self, x, cache=None, pos=0):
        x = x + self.attn(self.ln_1(x), cache, pos)
        return x + self.mlp(self.ln_2(x))


class TorchGPT(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.config = c
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(c.vocab_size, c.n_embd), wpe=nn.Embedding(c.block_size, c.n_embd),
            h=nn.ModuleList([Block(c) for _ in range(c.n_layer)]),
            ln_f=nn.LayerNorm(c.n_embd, eps=c.layer_norm_epsilon, bias=c.bias)))

    def forward(self, idx, targets=None, caches=None, pos=0):
        B, T = idx.shape
        tr = self.transformer
        x = tr.wte(idx) + tr.wpe(torch.arange(pos, pos + T))
        x = F.dropout(x, self.config.dropout, self.training)
        for i, b in enumerate(tr.h):
            x = b(x, None if caches is None else caches[i], pos)
        x = tr.ln_f(x)
        if targets is None:
            return F.linear(x[:, -1:], tr.wte.weight), None
        logits = F.linear(x, tr.wte.weight)
        return logits, F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def from_ironformer(model) -> TorchGPT:
    t = TorchGPT(model.config)
    sd = {k: torch.from_numpy(v) for k, v in model.arrays().items()}
    missing, unexpected = t.load_state_dict(sd, strict=False)
    assert not unexpected and not missing, (missing, unexpected)
    return t


def make_optimizer(model: TorchGPT, lr=1e-3, wd=0.1, betas=(0.9, 0.99)):
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}],
                             lr=lr, betas=betas, eps=1e-8, fused=True)


def time_train_step(mcfg, batch_size, threads, steps=5, warmup=2, seed=0):
    """Median seconds of one forward+backward+AdamW step of a PyTorch eager GPT."""
    torch.set_num_threads(threads)
    from ironformer.models import GPT
    model = from_ironformer(GPT(mcfg, seed=seed))
    opt = make_optimizer(model)
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.integers(0, mcfg.vocab_size, (batch_size, mcfg.block_size)))
    y = torch.from_numpy(rng.integers(0, mcfg.vocab_size, (batch_size, mcfg.block_size)))
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        _, loss = model(x, y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return float(np.median(times))


@torch.no_grad()
def generate_kv(model: TorchGPT, idx: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    """Greedy decoding with a preallocated KV cache (one query per new token)."""
    c = model.config
    B = idx.shape[0]
    hs = c.n_embd // c.n_head
    caches = [(torch.zeros(B, c.n_head, c.block_size, hs), torch.zeros(B, c.n_head, c.block_size, hs))
              for _ in range(c.n_layer)]
    logits, _ = model(idx, caches=caches, pos=0)
    pos = idx.shape[1]
    out = [idx]
    for _ in range(max_new_tokens):
        tok = logits[:, -1].argmax(-1, keepdim=True)
        out.append(tok)
        if pos >= c.block_size:
            break
        logits, _ = model(tok, caches=caches, pos=pos)
        pos += 1
    return torch.cat(out, 1)


def train_reference(cfg, log_every=250):
    """Train the PyTorch reference with ironformer's exact data/batch/schedule recipe."""
    from pathlib import Path

    from ironformer.models import GPT
    from ironformer.train import _estimate_loss, _prepare, lr_at  # noqa: F401

    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    tok, ds = _prepare(cfg, Path(cfg.out_dir))
    mcfg = cfg.model_config(tok.vocab_size)
    model = from_ironformer(GPT(mcfg, seed=cfg.seed))
    opt = make_optimizer(model, cfg.lr, cfg.weight_decay, (cfg.beta1, cfg.beta2))
    rng = np.random.default_rng(cfg.seed)

    def evaluate(step):
        model.eval()
        out = {}
        with torch.no_grad():
            for i, split in enumerate(("train", "val")):
                erng = np.random.default_rng([cfg.seed, step, i, 7])
                ls = []
                for _ in range(cfg.eval_iters):
                    x, y = ds.get_batch(split, cfg.batch_size, cfg.block_size, erng)
                    ls.append(model(torch.from_numpy(x), torch.from_numpy(y))[1].item())
                out[split] = float(np.mean(ls))
        model.train()
        return out

    model.train()
    t0 = time.perf_counter()
    losses = None
    for step in range(cfg.max_iters):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        for _ in range(cfg.grad_accum):
            x, y = ds.get_batch("train", cfg.batch_size, cfg.block_size, rng)
            _, loss = model(torch.from_numpy(x), torch.from_numpy(y))
            (loss / cfg.grad_accum).backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if (step + 1) % cfg.eval_interval == 0 or step + 1 == cfg.max_iters:
            losses = evaluate(step + 1)
            print(f"[torch] step {step + 1}: train {losses['train']:.4f} val {losses['val']:.4f} "
                  f"({time.perf_counter() - t0:.0f}s)", flush=True)
    return losses


def main():
    from ironformer.train import TrainConfig

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--max-iters", type=int, default=2000)
    ap.add_argument("--eval-interval", type=int, default=250)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out-dir", default="out_torch_ref")
    a = ap.parse_args()
    cfg = TrainConfig(max_iters=a.max_iters, eval_interval=a.eval_interval, threads=a.threads,
                      out_dir=a.out_dir, progress=False)
    res = train_reference(cfg)
    print(f"[torch] final: train {res['train']:.4f} val {res['val']:.4f}")


if __name__ == "__main__":
    main()
