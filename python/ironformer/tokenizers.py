"""Tokenizers for the GPT work: a character-level one and a byte-level BPE (``tokenizers`` library).

Both share one small interface::

    tok.encode(text) -> list[int]      tok.decode(ids) -> str      tok.vocab_size
    tok.save(path)                     load_tokenizer(path) / CharTokenizer.load / BPETokenizer.load

``decode(encode(s)) == s`` for every text the tokenizer covers: for ``CharTokenizer`` the texts
written in its alphabet (an unknown character raises ``ValueError`` naming it), for
``BPETokenizer`` any UTF-8 text (byte-level: no unknown tokens exist).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Sequence

__all__ = ["CharTokenizer", "BPETokenizer", "load_tokenizer"]

_CHAR_KIND = "ironformer-char"


class CharTokenizer:
    """One token per character; the vocabulary is the sorted set of the corpus characters.

    Unknown characters raise ``ValueError`` (there is no silent fallback, so a round trip can
    never lose text).
    """

    def __init__(self, chars: Sequence[str]):
        chars = list(chars)
        if not chars:
            raise ValueError("CharTokenizer: the vocabulary is empty (no characters in the text)")
        if len(set(chars)) != len(chars):
            raise ValueError("CharTokenizer: duplicate characters in the vocabulary")
        self.chars = chars
        self.stoi = {c: i for i, c in enumerate(chars)}

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    @property
    def eos_token_id(self):
        return None

    def encode(self, text: str) -> list[int]:
        stoi = self.stoi
        try:
            return [stoi[c] for c in text]
        except KeyError as e:
            raise ValueError(
                f"CharTokenizer: character {e.args[0]!r} is not in the vocabulary "
                f"({self.vocab_size} characters learnt from the training text)") from None

    def decode(self, ids: Iterable[int]) -> str:
        chars, n = self.chars, len(self.chars)
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < n:
                raise IndexError(f"CharTokenizer: token id {i} out of range for vocabulary size {n}")
            out.append(chars[i])
        return "".join(out)

    def save(self, path) -> Path:
        """Write a JSON file (``path`` may be a directory: then ``path/tokenizer.json``)."""
        path = _file_path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"type": _CHAR_KIND, "chars": self.chars}, ensure_ascii=False),
                        encoding="utf-8")
        return path

    @classmethod
    def load(cls, path) -> "CharTokenizer":
        obj = json.loads(_file_path(path).read_text(encoding="utf-8"))
        if obj.get("type") != _CHAR_KIND:
            raise ValueError(f"{path}: not an ironformer character tokenizer file")
        return cls(obj["chars"])


class BPETokenizer:
    """Byte-level BPE (GPT-2 style) from the Hugging Face ``tokenizers`` library.

    ``BPETokenizer.train(files, vocab_size)`` learns merges from the user's text files;
    ``BPETokenizer.load(path)`` reads any Hugging Face ``tokenizer.json`` (for example GPT-2's).
    """

    def __init__(self, tokenizer):
        self._tok = tokenizer

    @classmethod
    def train(cls, files: Sequence, vocab_size: int = 2048, min_frequency: int = 2,
              special_tokens: Sequence[str] = ("<|endoftext|>",)) -> "BPETokenizer":
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        files = [str(f) for f in files]
        for f in files:
            if not os.path.isfile(f):
                raise FileNotFoundError(f"BPETokenizer.train: no such file: {f}")
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, min_frequency=min_frequency, show_progress=False,
            special_tokens=list(special_tokens),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tok.train(files, trainer)
        return cls(tok)

    @classmethod
    def train_from_texts(cls, texts: Sequence[str], vocab_size: int = 2048, **kw) -> "BPETokenizer":
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            paths = []
            for i, t in enumerate(texts):
                p = Path(d) / f"text{i}.txt"
                p.write_text(t, encoding="utf-8")
                paths.append(p)
            return cls.train(paths, vocab_size=vocab_size, **kw)

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    @property
    def eos_token_id(self):
        return self._tok.token_to_id("<|endoftext|>")

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Iterable[int]) -> str:
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=False)

    def save(self, path) -> Path:
        path = _file_path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._tok.save(str(path))
        return path

    @classmethod
    def load(cls, path) -> "BPETokenizer":
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_file(str(_file_path(path))))


def _file_path(path) -> Path:
    path = Path(path)
    if path.is_dir() or (not path.suffix and not path.exists()):
        return path / "tokenizer.json"
    return path


def load_tokenizer(path):
    """Load whichever tokenizer ``path`` (a tokenizer.json file or a directory holding one) is."""
    p = _file_path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no tokenizer file at {p}")
    try:
        obj = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{p}: not a JSON tokenizer file ({e})") from None
    if isinstance(obj, dict) and obj.get("type") == _CHAR_KIND:
        return CharTokenizer(obj["chars"])
    return BPETokenizer.load(p)
