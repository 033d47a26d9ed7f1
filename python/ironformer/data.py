"""Token data on disk: tokenize text once into train/val ``.bin`` files, then draw random batches.

``prepare_dataset(texts, tokenizer, out_dir)`` writes ``train.bin`` and ``val.bin`` (a 90/10
split of the token stream; uint16 when the vocabulary fits, else uint32) plus ``meta.json``.
``TokenDataset(out_dir)`` memory-maps them; ``get_batch(split, batch_size, block_size, rng)``
returns ``(x, y)`` int64 arrays of shape (B, T), ``y`` shifted by one, with the start offsets
drawn from the seeded ``numpy.random.Generator`` passed in (its state is the "data position"
a checkpoint saves).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["prepare_dataset", "TokenDataset", "read_texts"]


def read_texts(files: Sequence) -> list[str]:
    out = []
    for f in files:
        p = Path(f)
        if not p.is_file():
            raise FileNotFoundError(f"no such data file: {p}")
        out.append(p.read_text(encoding="utf-8"))
    return out


def prepare_dataset(text: str, tokenizer, out_dir, val_fraction: float = 0.1) -> dict:
    """Tokenize ``text`` and write ``train.bin`` / ``val.bin`` / ``meta.json`` into ``out_dir``."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ids = tokenizer.encode(text)
    dtype = np.uint16 if tokenizer.vocab_size <= 65536 else np.uint32
    arr = np.asarray(ids, dtype=dtype)
    n = len(arr)
    n_train = int(n * (1.0 - val_fraction))
    arr[:n_train].tofile(out_dir / "train.bin")
    arr[n_train:].tofile(out_dir / "val.bin")
    meta = {"dtype": np.dtype(dtype).name, "vocab_size": tokenizer.vocab_size,
            "n_train": int(n_train), "n_val": int(n - n_train)}
    (out_dir / "meta.json").write_text(json.dumps(meta))
    return meta


class TokenDataset:
    """Memory-mapped train/val token arrays written by :func:`prepare_dataset`."""

    def __init__(self, data_dir):
        data_dir = Path(data_dir)
        meta_path = data_dir / "meta.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"no prepared dataset in {data_dir} (meta.json missing)")
        self.meta = json.loads(meta_path.read_text())
        dtype = np.dtype(self.meta["dtype"])
        self.splits = {}
        for split in ("train", "val"):
            p = data_dir / f"{split}.bin"
            self.splits[split] = np.memmap(p, dtype=dtype, mode="r") if p.stat().st_size else \
                np.zeros(0, dtype=dtype)

    def __len__(self):
        return len(self.splits["train"])

    def get_batch(self, split: str, batch_size: int, block_size: int,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        data = self.splits[split]
        if len(data) <= block_size:
            raise ValueError(
                f"the {split} split has {len(data)} tokens, fewer than block_size + 1 = "
                f"{block_size + 1}; use more text or a smaller --block-size")
        ix = rng.integers(0, len(data) - block_size, size=batch_size)
        offs = ix[:, None] + np.arange(block_size + 1)[None, :]
        chunk = np.asarray(data[offs], dtype=np.int64)
        return chunk[:, :-1].copy(), chunk[:, 1:].copy()
