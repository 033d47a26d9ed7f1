"""The ``ironformer`` command line: train, generate, info, bench (+ the encoder commands).

``ironformer train`` with no arguments trains the default character-level GPT on the bundled
Shakespeare corpus (nanoGPT's CPU recipe) into ./out and prints a sample. Errors the user can
fix (bad arguments, missing files, a diverged run) print one line on stderr and exit non-zero.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

__all__ = ["main", "build_parser"]


class CLIError(Exception):
    """An error reported as one line on stderr (exit status 1)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):                      # one line, exit status 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def _number(conv, ok, expected, unparsable):
    """An argparse type: conv(s) that must satisfy ok, else "expected <...>, got '<s>'"."""
    def parse(s):
        try:
            v = conv(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {unparsable}, got {s!r}") from None
        if not ok(v):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {s!r}")
        return v
    return parse


_positive_int = _number(int, lambda v: v >= 1, "a positive integer", "a positive integer")
_nonneg_int = _number(int, lambda v: v >= 0, "an integer >= 0", "an integer >= 0")
_positive_float = _number(float, lambda v: 0 < v < float("inf"), "a positive number", "a number")   # NaN fails
_nonneg_float = _number(float, lambda v: 0 <= v < float("inf"), "a number >= 0", "a number")


def _prob(s):
    v = _positive_float(s)
    if v > 1:
        raise argparse.ArgumentTypeError(f"expected a probability in (0, 1], got {s!r}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="ironformer", description="Train and run transformer language models on CPUs.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    t = sub.add_parser("train", help="train a GPT (default: character-level on the bundled Shakespeare)")
    t.add_argument("--data", nargs="+", metavar="FILE", help="UTF-8 text files (default: bundled corpus)")
    t.add_argument("--tokenizer", choices=["char", "bpe"], default="char")
    t.add_argument("--bpe-vocab-size", type=_positive_int, default=2048)
    t.add_argument("--n-layer", type=_positive_int, default=4)
    t.add_argument("--n-head", type=_positive_int, default=4)
    t.add_argument("--n-embd", type=_positive_int, default=128)
    t.add_argument("--block-size", type=_positive_int, default=64)
    t.add_argument("--batch-size", type=_positive_int, default=12)
    t.add_argument("--grad-accum", type=_positive_int, default=1)
    t.add_argument("--max-iters", type=_nonneg_int, default=2000)
    t.add_argument("--lr", type=_positive_float, default=1e-3)
    t.add_argument("--min-lr", type=_nonneg_float, default=None, help="default: lr / 10")
    t.add_argument("--warmup-iters", type=_nonneg_int, default=100)
    t.add_argument("--weight-decay", type=_nonneg_float, default=0.1)
    t.add_argument("--grad-clip", type=_nonneg_float, default=1.0)
    t.add_argument("--dropout", type=_nonneg_float, default=0.0)
    t.add_argument("--eval-interval", type=_positive_int, default=250)
    t.add_argument("--eval-iters", type=_positive_int, default=20)
    t.add_argument("--threads", type=_positive_int, default=None)
    t.add_argument("--out-dir", default="out")
    t.add_argument("--resume", action="store_true", help="continue the run checkpointed in --out-dir")
    t.add_argument("--seed", type=int, default=1337)
    t.add_argument("--sample-tokens", type=_nonneg_int, default=300, help="sample printed at the end")
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(func=_cmd_train)

    g = sub.add_parser("generate", help="stream text from a trained model directory")
    g.add_argument("--model", required=True, metavar="DIR",
                   help="a directory written by `ironformer train` (or a HF GPT-2 checkpoint with tokenizer.json)")
    g.add_argument("--prompt", default="\n")
    g.add_argument("--max-new-tokens", type=_nonneg_int, default=200)
    g.add_argument("--temperature", type=_nonneg_float, default=0.8)
    g.add_argument("--top-k", type=_positive_int, default=None)
    g.add_argument("--top-p", type=_prob, default=None)
    g.add_argument("--seed", type=int, default=None)
    g.add_argument("--threads", type=_positive_int, default=None)
    g.set_defaults(func=_cmd_generate)

    i = sub.add_parser("info", help="version, ISA and threads")
    i.set_defaults(func=_cmd_info)

    b = sub.add_parser("bench", help="short benchmark of a GPT training step and generation")
    b.add_argument("--threads", type=_positive_int, default=None)
    b.add_argument("--steps", type=_positive_int, default=5)
    b.set_defaults(func=_cmd_bench)

    from .cli_encoders import add_encoder_commands
    add_encoder_commands(sub)
    return p


# ---- commands ------------------------------------------------------------------------------
def _cmd_train(args) -> int:
    from .train import TrainConfig, TrainingDiverged, train

    for f in args.data or []:
        if not Path(f).is_file():
            raise CLIError(f"no such data file: {f}")
    if args.n_embd % args.n_head:
        raise CLIError(f"--n-embd ({args.n_embd}) must be divisible by --n-head ({args.n_head})")
    if args.resume and not (Path(args.out_dir) / "ckpt.safetensors").is_file():
        raise CLIError(f"--resume: no checkpoint in {args.out_dir}")
    cfg = TrainConfig(
        data=args.data, tokenizer=args.tokenizer, bpe_vocab_size=args.bpe_vocab_size,
        n_layer=args.n_layer, n_head=args.n_head, n_embd=args.n_embd, block_size=args.block_size,
        batch_size=args.batch_size, grad_accum=args.grad_accum, max_iters=args.max_iters,
        lr=args.lr, min_lr=args.lr / 10 if args.min_lr is None else args.min_lr,
        warmup_iters=min(args.warmup_iters, args.max_iters), weight_decay=args.weight_decay,
        grad_clip=args.grad_clip, dropout=args.dropout, eval_interval=args.eval_interval,
        eval_iters=args.eval_iters, threads=args.threads, out_dir=args.out_dir,
        resume=args.resume, seed=args.seed, progress=not args.no_progress)
    print(f"training a {cfg.n_layer}-layer, {cfg.n_head}-head, {cfg.n_embd}-wide GPT "
          f"(context {cfg.block_size}, batch {cfg.batch_size}) for {cfg.max_iters} steps -> {cfg.out_dir}",
          flush=True)
    try:
        res = train(cfg)
    except TrainingDiverged as e:
        raise CLIError(str(e)) from None
    except (ValueError, FileNotFoundError, UnicodeDecodeError) as e:
        raise CLIError(str(e)) from None
    n = res.model.num_parameters()
    vl = "n/a" if res.val_loss is None else f"{res.val_loss:.4f}"
    print(f"done: {res.step} steps, {n / 1e6:.2f}M parameters, val loss {vl}; "
          f"model, tokenizer and checkpoint in {res.out_dir}", flush=True)
    if args.sample_tokens:
        import numpy as np

        print("---- sample ----", flush=True)
        start = _start_ids(res.tokenizer, "\n")
        _stream(res.model, res.tokenizer, np.array([start], dtype=np.int64), args.sample_tokens,
                temperature=0.8, top_k=None, top_p=None, seed=args.seed)
    return 0


def _start_ids(tok, prompt: str):
    try:
        ids = tok.encode(prompt)
    except ValueError as e:
        raise CLIError(f"prompt: {e}") from None
    if not ids:
        ids = [tok.eos_token_id if tok.eos_token_id is not None else 0]
    return ids


def _stream(model, tok, idx, n, *, temperature, top_k, top_p, seed):
    out = sys.stdout
    done = []
    shown = ""
    eos = getattr(tok, "eos_token_id", None)
    for t in model.generate_stream(idx, n, temperature=temperature, top_k=top_k, top_p=top_p,
                                   seed=seed, eos_token_id=eos):
        done.append(int(t[0]))
        text = tok.decode(done)
        if text.endswith("\ufffd"):                 # incomplete UTF-8 sequence: wait for more bytes
            continue
        out.write(text[len(shown):])
        out.flush()
        shown = text
    text = tok.decode(done)
    out.write(text[len(shown):] + "\n")
    out.flush()


def _cmd_generate(args) -> int:
    import numpy as np

    import ironformer as irf
    from .models.gpt import GPT
    from .tokenizers import load_tokenizer

    d = Path(args.model)
    if not d.is_dir():
        raise CLIError(f"--model: no such directory: {d}")
    if args.threads:
        irf.set_num_threads(args.threads)
    try:
        tok = load_tokenizer(d)
        model = GPT.from_pretrained(d)
    except (FileNotFoundError, ValueError) as e:
        raise CLIError(f"--model {d}: {e}") from None
    if tok.vocab_size > model.config.vocab_size:
        raise CLIError(f"--model {d}: tokenizer vocabulary ({tok.vocab_size}) is larger than the "
                       f"model's ({model.config.vocab_size})")
    ids = _start_ids(tok, args.prompt)
    sys.stdout.write(args.prompt)
    _stream(model, tok, np.array([ids], dtype=np.int64), args.max_new_tokens,
            temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, seed=args.seed)
    return 0


def _cmd_info(args) -> int:
    import ironformer as irf

    irf.show_config()
    return 0


def _load_reference():
    """benchmarks/reference_gpt_torch.py from a source checkout, or None (no torch / no checkout)."""
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "reference_gpt_torch.py"
    if not path.is_file() or importlib.util.find_spec("torch") is None:
        return None
    spec = importlib.util.spec_from_file_location("_ref_gpt", path)
    ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref)
    return ref


def _cmd_bench(args) -> int:
    """Training step and KV-cache decoding of the default preset; PyTorch side by side if present."""
    import numpy as np

    import ironformer as irf
    from .models.gpt import GPT
    from .train import TrainConfig, _make_optimizer

    if args.threads:
        irf.set_num_threads(args.threads)
    threads = irf.get_num_threads()
    cfg = TrainConfig()
    mcfg = cfg.model_config(65)
    model = GPT(mcfg, seed=0)
    opt = _make_optimizer(model, cfg)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 65, (cfg.batch_size, cfg.block_size))
    y = rng.integers(0, 65, (cfg.batch_size, cfg.block_size))
    ref = _load_reference()
    if ref is not None:
        import torch
        torch.set_num_threads(threads)
        tmodel = ref.from_ironformer(model)
        topt = ref.make_optimizer(tmodel)
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)

    def step():
        _, loss = model(x, y)
        loss.backward()
        opt.step()
        opt.zero_grad()

    def tstep():
        _, loss = tmodel(tx, ty)
        loss.backward()
        topt.step()
        topt.zero_grad(set_to_none=True)

    # interleaved, 2 warm-up steps; with 2+ threads a short pause before each timed step lets the
    # other library's idle pool workers stop spinning (they would take a core: benchmarks/_common.py)
    pause = 0.1 if threads > 1 else 0.0
    ti, tt = [], []
    for i in range(args.steps + 2):
        time.sleep(pause)
        t0 = time.perf_counter()
        step()
        t1 = t1b = time.perf_counter()
        if ref is not None:
            time.sleep(pause)
            t1b = time.perf_counter()
            tstep()
        t2 = time.perf_counter()
        if i >= 2:
            ti.append(t1 - t0)
            tt.append(t2 - t1b)
    t_irf = float(np.median(ti))
    model.eval()
    prompt = np.zeros((1, 1), dtype=np.int64)
    model.generate(prompt, 8, temperature=0)
    t0 = time.perf_counter()
    model.generate(prompt, 63, temperature=0)
    gen_irf = 63 / (time.perf_counter() - t0)
    print(f"ironformer {irf.__version__}, ISA {irf.isa()}, {threads} threads")
    print(f"default preset GPT ({model.num_parameters() / 1e6:.2f}M params, batch {cfg.batch_size}x{cfg.block_size}):")
    print(f"  training step (fwd+bwd+AdamW): {1e3 * t_irf:8.2f} ms  ({cfg.batch_size * cfg.block_size / t_irf:,.0f} tok/s)")
    if ref is not None:
        t_torch = float(np.median(tt))
        print(f"  PyTorch eager, same step:      {1e3 * t_torch:8.2f} ms  -> ironformer {t_torch / t_irf:.2f}x")
    else:
        print("  (PyTorch or benchmarks/ not available: no baseline; see benchmarks/bench_gpt.py)")
    print(f"  generation (KV cache, batch 1): {gen_irf:8.1f} tok/s")
    return 0


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except CLIError as e:
        print(f"ironformer {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"ironformer {args.command}: interrupted", file=sys.stderr)
        return 130
    except OSError as e:                            # missing files, permissions, a file where a dir goes
        print(f"ironformer {args.command}: error: {e}", file=sys.stderr)
        return 1
