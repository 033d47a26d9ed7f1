"""CLI subcommands for encoders: ``ironformer embed`` and ``ironformer classify fit|predict``.

``add_encoder_commands(subparsers)`` registers them on the main parser's subparsers; each
subcommand stores its handler as ``func`` (``args.func(args) -> int`` exit status).  Handlers
turn expected failures (missing files, empty input, bad TSV, bad model directory) into one
line on stderr, ``ironformer <cmd>: error: ...``, and exit status 2 (usage/input) or 1
(anything else), without a traceback.

    ironformer embed --model DIR lines.txt --out emb.npy [--batch-size 32] [--no-normalize]
    ironformer classify fit --model DIR --data train.tsv --out clf_dir [--epochs 1 --lr 5e-5
                                 --batch-size 16 --val val.tsv --max-seq-length 128]
    ironformer classify predict --model clf_dir lines.txt [--proba]

TSV data: one example per line, ``label<TAB>text``; blank lines are skipped.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


class CLIError(Exception):
    """An expected failure reported to the user as one line."""


def _err(cmd: str, msg: str, code: int) -> int:
    print(f"ironformer {cmd}: error: {msg}", file=sys.stderr)
    return code


def _read_lines(path: str, what: str) -> list[str]:
    p = Path(path)
    if not p.is_file():
        raise CLIError(f"{what} not found: {path}")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise CLIError(f"{what} is not UTF-8 text: {path}") from None
    lines = text.splitlines()
    if not any(line.strip() for line in lines):
        raise CLIError(f"{what} is empty: {path}")
    return lines


def _read_tsv(path: str) -> tuple[list[str], list[str]]:
    texts, labels = [], []
    for n, line in enumerate(_read_lines(path, "data file"), 1):
        if not line.strip():
            continue
        parts = line.split("\t", 1)
        if len(parts) != 2 or not parts[0].strip():
            raise CLIError(f"{path}:{n}: expected 'label<TAB>text', got {line[:60]!r}")
        labels.append(parts[0].strip())
        texts.append(parts[1])
    if len(set(labels)) < 2:
        raise CLIError(f"{path}: need at least 2 distinct labels, found {sorted(set(labels))}")
    return texts, labels


def _check_model_dir(path: str) -> None:
    p = Path(path)
    if not p.is_dir():
        raise CLIError(f"model directory not found: {path}")
    if not (p / "config.json").is_file() and not (p / "modules.json").is_file():
        raise CLIError(f"{path} is not a model directory (no config.json or modules.json)")


def _guard(cmd: str, fn):
    """Run fn(); map expected exceptions to one-line errors and exit codes."""
    def run(args) -> int:
        try:
            return fn(args) or 0
        except CLIError as e:
            return _err(cmd, str(e), 2)
        except (FileNotFoundError, ValueError, IndexError, TypeError) as e:
            return _err(cmd, str(e), 1)
        except KeyboardInterrupt:
            return _err(cmd, "interrupted", 130)
        except Exception as e:  # unexpected: still one line (IRONFORMER_DEBUG=1 shows it)
            if os.environ.get("IRONFORMER_DEBUG"):
                raise
            return _err(cmd, f"{type(e).__name__}: {e}", 1)
    return run


def _cmd_embed(args) -> int:
    import numpy as np
    from .encoders import SentenceEncoder
    if args.batch_size < 1:
        raise CLIError(f"--batch-size must be >= 1, got {args.batch_size}")
    lines = _read_lines(args.file, "input file")
    _check_model_dir(args.model)
    enc = SentenceEncoder(args.model, max_seq_length=args.max_seq_length)
    emb = enc.encode(lines, batch_size=args.batch_size, normalize=not args.no_normalize,
                     show_progress_bar=sys.stderr.isatty())
    out = args.out or str(Path(args.file).with_suffix(".npy"))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    np.save(out, emb)
    print(f"wrote {emb.shape[0]} embeddings of dim {emb.shape[1]} to {out}")
    return 0


def _cmd_fit(args) -> int:
    from .encoders import TextClassifier
    texts, labels = _read_tsv(args.data)
    val = _read_tsv(args.val) if args.val else (None, None)
    _check_model_dir(args.model)
    if args.epochs < 1 or args.batch_size < 1 or args.lr <= 0:
        raise CLIError("--epochs and --batch-size must be >= 1 and --lr > 0")
    clf = TextClassifier(args.model, max_seq_length=args.max_seq_length, pooling=args.pooling)
    history = clf.fit(texts, labels, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                      val_texts=val[0], val_labels=val[1], show_progress_bar=True)
    clf.save_pretrained(args.out)
    for rec in history:
        print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in rec.items()))
    print(f"saved classifier ({len(clf.labels)} labels) to {args.out}")
    return 0


def _cmd_predict(args) -> int:
    from .encoders import TextClassifier
    lines = _read_lines(args.file, "input file")
    p = Path(args.model)
    if not (p / "classifier_config.json").is_file():
        raise CLIError(f"{args.model} is not a saved classifier (no classifier_config.json; "
                       "train one with 'ironformer classify fit')")
    clf = TextClassifier.from_pretrained(p)
    if args.proba:
        probs = clf.predict_proba(lines, batch_size=args.batch_size)
        print("\t".join(["label"] + [str(x) for x in clf.labels]))
        for row in probs:
            lab = clf.labels[int(row.argmax())]
            print("\t".join([str(lab)] + [f"{x:.4f}" for x in row]))
    else:
        for lab in clf.predict(lines, batch_size=args.batch_size):
            print(lab)
    return 0


def add_encoder_commands(subparsers) -> None:
    """Register ``embed`` and ``classify`` (with ``fit`` / ``predict``) on ``subparsers``."""
    e = subparsers.add_parser("embed", help="sentence embeddings, one per line of FILE, to .npy",
                              description="Embed each line of FILE with a sentence-transformers "
                              "or BERT model directory; writes a float32 (N, dim) .npy.")
    e.add_argument("--model", required=True, help="sentence-transformers / BERT directory")
    e.add_argument("file", metavar="FILE", help="UTF-8 text, one sentence per line")
    e.add_argument("--out", help="output .npy (default: FILE with .npy suffix)")
    e.add_argument("--batch-size", type=int, default=32)
    e.add_argument("--max-seq-length", type=int, default=None)
    e.add_argument("--no-normalize", action="store_true", help="keep raw (unnormalised) vectors "
                   "unless the model has a Normalize module")
    e.set_defaults(func=_guard("embed", _cmd_embed))

    c = subparsers.add_parser("classify", help="fine-tune / apply a text classifier")
    csub = c.add_subparsers(dest="classify_command", metavar="{fit,predict}")
    csub.required = True
    f = csub.add_parser("fit", help="fine-tune an encoder + head on a TSV (label<TAB>text)")
    f.add_argument("--model", required=True, help="sentence-transformers / BERT directory")
    f.add_argument("--data", required=True, help="training TSV: label<TAB>text per line")
    f.add_argument("--val", help="validation TSV (accuracy reported per epoch)")
    f.add_argument("--out", required=True, help="directory to save the classifier")
    f.add_argument("--epochs", type=int, default=1)
    f.add_argument("--lr", type=float, default=5e-5)
    f.add_argument("--batch-size", type=int, default=16)
    f.add_argument("--max-seq-length", type=int, default=None,
                   help="default: 128 or the model's limit if smaller")
    f.add_argument("--pooling", choices=["mean", "cls", "max"], default=None)
    f.set_defaults(func=_guard("classify fit", _cmd_fit))
    p = csub.add_parser("predict", help="predict a label for each line of FILE")
    p.add_argument("--model", required=True, help="directory written by 'classify fit'")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--proba", action="store_true", help="also print class probabilities")
    p.set_defaults(func=_guard("classify predict", _cmd_predict))


def main(argv=None) -> int:
    """Standalone entry (``python -m ironformer.cli_encoders``) until the main CLI calls us."""
    parser = argparse.ArgumentParser(prog="ironformer")
    sub = parser.add_subparsers(dest="command", metavar="command")
    sub.required = True
    add_encoder_commands(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
