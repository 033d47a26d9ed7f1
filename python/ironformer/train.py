"""Training loop for the GPT: AdamW, warmup + cosine schedule, clipping, accumulation, eval,
atomic checkpoints with bit-exact resume, NaN guard, progress bar, JSONL metrics, loss plot.

Typical use (the CLI's ``ironformer train`` is a thin layer over this)::

    from ironformer.train import TrainConfig, train
    result = train(TrainConfig(out_dir="out", max_iters=2000))

Determinism: the training batches come from a ``numpy.random.Generator`` seeded with
``seed`` whose state is saved in the checkpoint (the "data position"); eval batches come from
a generator seeded with ``(seed, step)`` so evaluating never moves the training stream;
dropout is reseeded with ``(seed, step)`` every step. Resuming therefore continues exactly the
run that stopped.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from . import corpus, data as data_mod, tokenizers as tok_mod
from .models.gpt import GPT, GPTConfig, _array

__all__ = ["TrainConfig", "TrainResult", "TrainingDiverged", "train", "lr_at", "load_checkpoint"]

log = logging.getLogger(__name__)

CKPT_NAME = "ckpt.safetensors"
CKPT_FORMAT = "ironformer-gpt-train-1"


class TrainingDiverged(RuntimeError):
    """The loss (or gradient norm) became NaN/inf; the last good checkpoint was kept."""


@dataclass
class TrainConfig:
    # data
    data: Optional[Sequence[str]] = None     # text files; None -> the bundled Shakespeare corpus
    tokenizer: str = "char"                   # "char" | "bpe"
    bpe_vocab_size: int = 2048
    # model (nanoGPT shakespeare-char CPU recipe)
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 64
    dropout: float = 0.0
    bias: bool = True
    # optimisation
    batch_size: int = 12
    grad_accum: int = 1
    max_iters: int = 2000
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_iters: int = 100
    lr_decay_iters: Optional[int] = None      # None -> max_iters
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0                    # 0 disables clipping
    # evaluation / output
    eval_interval: int = 250
    eval_iters: int = 20
    log_interval: int = 1
    out_dir: str = "out"
    resume: bool = False
    seed: int = 1337
    threads: Optional[int] = None
    progress: bool = True
    plot: bool = True

    def model_config(self, vocab_size: int) -> GPTConfig:
        return GPTConfig(vocab_size=vocab_size, block_size=self.block_size, n_layer=self.n_layer,
                         n_head=self.n_head, n_embd=self.n_embd, dropout=self.dropout, bias=self.bias)

    def validate(self) -> None:
        for name in ("batch_size", "grad_accum", "eval_iters", "eval_interval", "block_size",
                     "n_layer", "n_head", "n_embd", "log_interval"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"TrainConfig.{name} must be a positive int, got {v!r}")
        if self.max_iters < 0:
            raise ValueError(f"TrainConfig.max_iters must be >= 0, got {self.max_iters}")
        if not self.lr > 0 or not math.isfinite(self.lr):
            raise ValueError(f"TrainConfig.lr must be a positive number, got {self.lr}")
        if self.tokenizer not in ("char", "bpe"):
            raise ValueError(f"TrainConfig.tokenizer must be 'char' or 'bpe', got {self.tokenizer!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")


@dataclass
class TrainResult:
    model: GPT
    tokenizer: object
    step: int
    train_loss: Optional[float]
    val_loss: Optional[float]
    history: list = field(default_factory=list)
    out_dir: Optional[Path] = None


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to ``lr`` over ``warmup_iters``, cosine decay to ``min_lr`` at ``lr_decay_iters``."""
    decay_iters = cfg.lr_decay_iters if cfg.lr_decay_iters is not None else cfg.max_iters
    if cfg.warmup_iters > 0 and step < cfg.warmup_iters:
        return cfg.lr * (step + 1) / (cfg.warmup_iters + 1)
    if step >= decay_iters:
        return cfg.min_lr
    span = max(1, decay_iters - cfg.warmup_iters)
    ratio = (step - cfg.warmup_iters) / span
    coeff = 0.5 * (1.0 + math.cos(math.pi * ratio))
    return cfg.min_lr + coeff * (cfg.lr - cfg.min_lr)


# ---- small adapters over the optimiser API ----------------------------------------------------
def _make_optimizer(model: GPT, cfg: TrainConfig):
    from . import optim

    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if len(p.shape) >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    try:
        return optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=1e-8,
                           weight_decay=cfg.weight_decay)
    except (TypeError, ValueError, AttributeError, KeyError):   # no param-group support
        return optim.AdamW(list(model.parameters()), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2),
                           eps=1e-8, weight_decay=cfg.weight_decay)


def _set_lr(opt, lr: float) -> None:
    groups = getattr(opt, "param_groups", None)
    if groups:
        for g in groups:
            g["lr"] = lr
    if hasattr(opt, "lr") and not callable(getattr(opt, "lr")):
        opt.lr = lr


def _clip(params, max_norm: float) -> float:
    from .nn.utils import clip_grad_norm_

    return float(clip_grad_norm_(params, max_norm))


def _grad_norm(params) -> float:
    from . import ops

    grads = [_grad_array(p) for p in params if p.grad is not None]
    return math.sqrt(ops.sum_squares(grads)) if grads else 0.0


def _grad_array(p) -> np.ndarray:
    g = p.grad
    if not isinstance(g, np.ndarray) and hasattr(g, "data"):
        g = g.data
    return np.asarray(g, dtype=np.float32)


def _seed_dropout(seed: int, step: int) -> None:
    from . import manual_seed

    manual_seed(int(np.random.SeedSequence([seed, step]).generate_state(1)[0]))


# ---- checkpoints ----
# One safetensors file: every array (model parameters, optimizer moments) is a tensor; the rest
# (step, configs, optimizer scalars, the data RNG state, the eval history) is JSON in the
# header metadata, arrays referenced as {"__tensor__": key}. No pickle: loading a checkpoint
# never executes code.
def _to_json(obj, tensors: dict, prefix: str):
    if isinstance(obj, np.ndarray):
        key = f"{prefix}"
        tensors[key] = np.ascontiguousarray(obj)
        return {"__tensor__": key}
    if isinstance(obj, dict):
        return {str(k): _to_json(v, tensors, f"{prefix}.{k}") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_json(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _from_json(obj, tensors: dict):
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            return tensors[obj["__tensor__"]]
        return {k: _from_json(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_from_json(v, tensors) for v in obj]
    return obj


def load_checkpoint(path) -> dict:
    """The training checkpoint (a dict: step, model arrays, optimizer state, data RNG state, ...)."""
    from safetensors import safe_open

    from .hub import read_safetensors

    path = Path(path)
    if path.is_dir():
        path = path / CKPT_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    with safe_open(str(path), framework="numpy") as f:
        meta = f.metadata() or {}
    if meta.get("format") != CKPT_FORMAT:
        raise ValueError(f"{path}: not an ironformer GPT training checkpoint")
    return _from_json(json.loads(meta["checkpoint"]), read_safetensors(path))


def _save_checkpoint(out_dir: Path, model, opt, step, rng, cfg, history, model_cfg) -> None:
    from .hub import write_safetensors

    tensors: dict = {}
    ckpt = {"step": step, "model": model.arrays(), "model_config": model_cfg.to_dict(),
            "optimizer": opt.state_dict(), "data_rng": rng.bit_generator.state,
            "train_config": asdict(cfg), "history": history}
    meta = json.dumps(_to_json(ckpt, tensors, "ckpt"), default=str)
    write_safetensors(tensors, out_dir / CKPT_NAME, metadata={"format": CKPT_FORMAT, "checkpoint": meta})


def _kept(out_dir: Path) -> str:
    p = out_dir / CKPT_NAME
    if p.is_file():
        return f"The last good checkpoint ({p}, step {load_checkpoint(p)['step']}) was kept."
    return "No checkpoint had been written yet (it is kept only at eval intervals)."


# ---- evaluation ----------------------------------------------------------------------------
def _estimate_loss(model, dataset, cfg: TrainConfig, step: int) -> dict:
    from . import no_grad

    out = {}
    model.eval()
    with no_grad():
        for i, split in enumerate(("train", "val")):
            rng = np.random.default_rng([cfg.seed, step, i, 7])
            losses = []
            for _ in range(cfg.eval_iters):
                x, y = dataset.get_batch(split, cfg.batch_size, cfg.block_size, rng)
                _, loss = model(x, y)
                losses.append(float(loss.item()))
            out[split] = float(np.mean(losses))
    model.train()
    return out


def _flops_per_token(model: GPT) -> float:
    c = model.config
    n = model.num_parameters(non_embedding=True)
    return 6.0 * n + 12.0 * c.n_layer * c.n_embd * c.block_size


# ---- main entry ----------------------------------------------------------------------------
def _prepare(cfg: TrainConfig, out_dir: Path):
    """Tokenizer + tokenized dataset in out_dir (built once; reused on resume)."""
    data_dir = out_dir / "data"
    tok_path = out_dir / "tokenizer.json"
    if cfg.resume and tok_path.is_file() and (data_dir / "meta.json").is_file():
        return tok_mod.load_tokenizer(tok_path), data_mod.TokenDataset(data_dir)
    if cfg.data:
        texts = data_mod.read_texts(cfg.data)
        files = [str(f) for f in cfg.data]
    else:
        texts = [corpus.text()]
        files = [str(p) for p in corpus.paths()]
    text = "\n\n".join(texts)
    if not text:
        raise ValueError("the training text is empty")
    if cfg.tokenizer == "char":
        tok = tok_mod.CharTokenizer.from_text(text)
    else:
        tok = tok_mod.BPETokenizer.train(files, vocab_size=cfg.bpe_vocab_size)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok.save(tok_path)
    data_mod.prepare_dataset(text, tok, data_dir)
    return tok, data_mod.TokenDataset(data_dir)


def train(cfg: TrainConfig) -> TrainResult:
    """Train (or resume) a GPT as configured; returns the model, tokenizer and final losses."""
    import ironformer as irf

    cfg.validate()
    if cfg.threads is not None:
        irf.set_num_threads(int(cfg.threads))
    threads = irf.get_num_threads()
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok, dataset = _prepare(cfg, out_dir)
    model_cfg = cfg.model_config(tok.vocab_size)

    ckpt = None
    if cfg.resume:
        ckpt = load_checkpoint(out_dir / CKPT_NAME)
        saved = GPTConfig(**ckpt["model_config"])
        if (saved.n_layer, saved.n_head, saved.n_embd, saved.block_size, saved.vocab_size) != \
                (model_cfg.n_layer, model_cfg.n_head, model_cfg.n_embd, model_cfg.block_size,
                 model_cfg.vocab_size):
            raise ValueError(f"--resume: the checkpoint in {out_dir} was trained with a different "
                             f"model ({saved}); pass the same model options")
        model_cfg = saved
    model = GPT(model_cfg, seed=cfg.seed)
    model.train()
    opt = _make_optimizer(model, cfg)
    rng = np.random.default_rng(cfg.seed)
    step = 0
    history: list = []
    if ckpt is not None:
        model.load_arrays(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        rng.bit_generator.state = ckpt["data_rng"]
        step = int(ckpt["step"])
        history = list(ckpt.get("history", []))

    params = list(model.parameters())
    tokens_per_step = cfg.batch_size * cfg.block_size * cfg.grad_accum
    flops_per_step = _flops_per_token(model) * tokens_per_step
    try:
        peak = float(irf._C.peak_gflops(threads)) * 1e9
    except Exception:  # pragma: no cover - peak probe unavailable
        peak = float("nan")
    metrics_path = out_dir / "metrics.jsonl"
    metrics = open(metrics_path, "a" if cfg.resume else "w", encoding="utf-8")
    (out_dir / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2, default=str))

    bar = None
    if cfg.progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=cfg.max_iters, initial=step, unit="step", dynamic_ncols=True)
    last_eval = None
    last_loss = None
    ema_dt = None

    def do_eval(at_step):
        nonlocal last_eval
        losses = _estimate_loss(model, dataset, cfg, at_step)
        last_eval = losses
        rec = {"step": at_step, "train_loss": losses["train"], "val_loss": losses["val"]}
        history.append(rec)
        metrics.write(json.dumps({"event": "eval", **rec}) + "\n")
        metrics.flush()
        msg = f"step {at_step}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}"
        (bar.write(msg) if bar is not None else log.info(msg))
        return losses

    try:
        while step < cfg.max_iters:
            lr = lr_at(step, cfg)
            _set_lr(opt, lr)
            t0 = time.perf_counter()
            if cfg.dropout > 0:
                _seed_dropout(cfg.seed, step)
            loss_sum = 0.0
            for micro in range(cfg.grad_accum):
                x, y = dataset.get_batch("train", cfg.batch_size, cfg.block_size, rng)
                _, loss = model(x, y)
                lv = float(loss.item())
                if not math.isfinite(lv):
                    raise TrainingDiverged(f"loss became {lv} at step {step}; stopped. "
                                           f"{_kept(out_dir)} Try a lower --lr.")
                loss_sum += lv
                if cfg.grad_accum > 1:
                    loss = loss * (1.0 / cfg.grad_accum)
                loss.backward()
            norm = _clip(params, cfg.grad_clip) if cfg.grad_clip > 0 else _grad_norm(params)
            if not math.isfinite(norm):
                raise TrainingDiverged(f"gradient norm became {norm} at step {step}; stopped. "
                                       f"{_kept(out_dir)} Try a lower --lr.")
            opt.step()
            opt.zero_grad()
            step += 1
            dt = time.perf_counter() - t0
            ema_dt = dt if ema_dt is None else 0.9 * ema_dt + 0.1 * dt
            last_loss = loss_sum / cfg.grad_accum
            tok_s = tokens_per_step / ema_dt
            mfu = flops_per_step / ema_dt / peak if peak == peak else float("nan")
            if step % cfg.log_interval == 0:
                metrics.write(json.dumps({"event": "step", "step": step, "loss": last_loss, "lr": lr,
                                          "grad_norm": norm, "dt": dt, "tokens_per_s": tok_s,
                                          "peak_fraction": mfu}) + "\n")
            if bar is not None:
                bar.set_postfix_str(f"loss {last_loss:.4f} lr {lr:.2e} {tok_s:,.0f} tok/s "
                                    f"{100 * mfu:.1f}% peak", refresh=False)
                bar.update(1)
            if step % cfg.eval_interval == 0 or step == cfg.max_iters:
                do_eval(step)
                _save_checkpoint(out_dir, model, opt, step, rng, cfg, history, model_cfg)
        if ckpt is not None and step == int(ckpt["step"]) and last_eval is None:
            last_eval = history[-1] if history else None
            if last_eval is not None:
                last_eval = {"train": last_eval["train_loss"], "val": last_eval["val_loss"]}
    finally:
        if bar is not None:
            bar.close()
        metrics.close()

    model.save_pretrained(out_dir)
    if cfg.plot:
        plot_losses(metrics_path, out_dir / "loss.png")
    model.eval()
    return TrainResult(model=model, tokenizer=tok, step=step,
                       train_loss=None if last_eval is None else last_eval["train"],
                       val_loss=None if last_eval is None else last_eval["val"],
                       history=history, out_dir=out_dir)


def plot_losses(metrics_path, png_path) -> Optional[Path]:
    """Loss curve PNG from the JSONL metrics; returns None (and does nothing) without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:
        log.info("matplotlib not installed: skipping the loss plot")
        return None
    steps, losses, ev = [], [], []
    with open(metrics_path, encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            if r.get("event") == "step":
                steps.append(r["step"])
                losses.append(r["loss"])
            elif r.get("event") == "eval":
                ev.append((r["step"], r["train_loss"], r["val_loss"]))
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, losses, lw=0.8, alpha=0.6, label="train (batch)")
    if ev:
        s, tr, va = zip(*ev)
        ax.plot(s, tr, "o-", label="train (eval)")
        ax.plot(s, va, "o-", label="val")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return Path(png_path)


class _CallableModule(type(os)):
    """``ironformer.train`` is this module and, called, the :func:`train` function."""

    def __call__(self, cfg: TrainConfig) -> TrainResult:
        return train(cfg)


import sys as _sys  # noqa: E402

_sys.modules[__name__].__class__ = _CallableModule
