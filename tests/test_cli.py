"""CLI smoke tests: `python -m ironformer train/generate/info`, and one-line errors."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import ironformer
from ironformer import corpus

# The subprocess must import the same ironformer as this test process (the installed package
# in CI, the source tree with its built _C during development), never an unbuilt source tree.
PKG_PARENT = Path(ironformer.__file__).resolve().parents[1]


def _run(*args, cwd=None, timeout=300):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PKG_PARENT), env.get("PYTHONPATH")]))
    env.setdefault("OMP_NUM_THREADS", "1")
    return subprocess.run([sys.executable, "-m", "ironformer", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)


TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16", "--batch-size", "2",
        "--eval-iters", "1", "--no-progress", "--threads", "1"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    data = d / "text.txt"
    data.write_text(corpus.read_play("hamlet")[:20000], encoding="utf-8")
    r = _run("train", "--data", str(data), "--max-iters", "5", "--eval-interval", "5",
             "--out-dir", str(d / "out"), "--sample-tokens", "20", *TINY)
    assert r.returncode == 0, r.stderr
    return d, r


def test_train_then_generate(trained):
    d, r = trained
    assert "done: 5 steps" in r.stdout and "val loss" in r.stdout
    assert "---- sample ----" in r.stdout
    for f in ("config.json", "model.safetensors", "tokenizer.json", "ckpt.safetensors", "metrics.jsonl"):
        assert (d / "out" / f).is_file()
    g = _run("generate", "--model", str(d / "out"), "--prompt", "HAMLET:", "--max-new-tokens", "25",
             "--seed", "3", "--top-k", "5")
    assert g.returncode == 0, g.stderr
    assert g.stdout.startswith("HAMLET:") and len(g.stdout.rstrip("\n")) >= len("HAMLET:") + 1
    g2 = _run("generate", "--model", str(d / "out"), "--prompt", "HAMLET:", "--max-new-tokens", "25",
              "--seed", "3", "--top-k", "5")
    assert g2.stdout == g.stdout


def test_resume_more_steps(trained):
    d, _ = trained
    r = _run("train", "--data", str(d / "text.txt"), "--max-iters", "7", "--eval-interval", "5",
             "--out-dir", str(d / "out"), "--resume", "--sample-tokens", "0", *TINY)
    assert r.returncode == 0, r.stderr
    assert "done: 7 steps" in r.stdout


def test_info():
    r = _run("info")
    assert r.returncode == 0 and "ISA" in r.stdout and "threads" in r.stdout


@pytest.mark.parametrize("args, msg", [
    (["train", "--max-iters", "-3"], "max-iters"),
    (["train", "--data", "/nonexistent/file.txt"], "no such data file"),
    (["train", "--n-embd", "30", "--n-head", "4"], "divisible"),
    (["generate", "--model", "/nonexistent/dir"], "no such directory"),
    (["generate"], "--model"),
    (["bogus-command"], "invalid choice"),
])
def test_errors_are_one_line(tmp_path, args, msg):
    r = _run(*args, cwd=tmp_path, timeout=120)
    assert r.returncode != 0
    assert msg in r.stderr
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) <= 3


def test_generate_with_unknown_char_prompt(trained):
    d, _ = trained
    r = _run("generate", "--model", str(d / "out"), "--prompt", "🙂", "--max-new-tokens", "3")
    assert r.returncode == 1 and "not in the vocabulary" in r.stderr and "Traceback" not in r.stderr


def test_diverging_run_is_one_line(trained, tmp_path):
    d, _ = trained
    r = _run("train", "--data", str(d / "text.txt"), "--max-iters", "6", "--eval-interval", "3",
             "--lr", "1e12", "--warmup-iters", "0", "--grad-clip", "0", "--out-dir", str(tmp_path / "o"),
             *TINY)
    assert r.returncode == 1
    assert "became" in r.stderr and "lower --lr" in r.stderr and "Traceback" not in r.stderr


def test_bpe_train_and_generate_non_latin(tmp_path):
    data = tmp_path / "t.txt"
    data.write_text(corpus.read_play("othello")[:15000] + "\nÉmoji 🙂 日本語\n", encoding="utf-8")
    r = _run("train", "--data", str(data), "--tokenizer", "bpe", "--bpe-vocab-size", "300",
             "--max-iters", "2", "--eval-interval", "2", "--out-dir", str(tmp_path / "o"),
             "--sample-tokens", "5", *TINY)
    assert r.returncode == 0, r.stderr
    g = _run("generate", "--model", str(tmp_path / "o"), "--prompt", "日本 🙂", "--max-new-tokens", "4",
             "--seed", "0")
    assert g.returncode == 0, g.stderr
    assert g.stdout.startswith("日本 🙂")
