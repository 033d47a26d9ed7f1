"""Sentence embeddings and text classification on the BERT encoder.

``SentenceEncoder(path)`` loads a sentence-transformers directory (modules.json, 1_Pooling,
optional Normalize, sentence_bert_config.json, tokenizer.json) or a plain BERT checkpoint
directory (mean pooling) and embeds texts like ``SentenceTransformer.encode``.

``TextClassifier(path)`` puts a pooling + Linear head on such an encoder and fine-tunes the
whole model with AdamW (``fit``), predicts (``predict`` / ``predict_proba``) and saves /
loads itself (``save_pretrained`` / ``from_pretrained``).

    enc = SentenceEncoder(model_dir)
    emb = enc.encode(["a sentence", "another"])            # (2, 384) float32, unit norm
    clf = TextClassifier(model_dir, max_seq_length=64)
    history = clf.fit(texts, labels, epochs=1, lr=5e-5, val_texts=vt, val_labels=vl)
    clf.predict(["to be or not to be"])
"""
from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path

import numpy as np

from . import autograd, optim
from .autograd import Function
from .models.bert import BERT
from .models import _encoder_ops as K
from .nn import Linear
from .nn import functional as F
from .nn.utils import clip_grad_norm_

__all__ = ["SentenceEncoder", "TextClassifier"]

log = logging.getLogger(__name__)
_F32 = np.float32

_POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens")
_LEGACY_POOLING = {"pooling_mode_cls_token": "cls", "pooling_mode_max_tokens": "max",
                   "pooling_mode_mean_tokens": "mean",
                   "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
                   "pooling_mode_weightedmean_tokens": "weightedmean",
                   "pooling_mode_lasttoken": "lasttoken"}
_TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json",
                    "special_tokens_map.json")


# ---- loading helpers --------------------------------------------------------------------------
def _read_json(p: Path) -> dict:
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{p}: invalid JSON ({e})") from None


def _pooling_modes(cfg: dict) -> tuple:
    """sentence-transformers Pooling config (new 'pooling_mode' or legacy booleans) -> modes."""
    if "pooling_mode" in cfg:
        m = cfg["pooling_mode"]
        modes = (m,) if isinstance(m, str) else tuple(m)
    else:
        modes = tuple(mode for k, mode in _LEGACY_POOLING.items() if cfg.get(k, False)) or ("mean",)
    for m in modes:
        if m not in _POOLING_MODES:
            raise ValueError(f"pooling mode {m!r} is not supported (supported: "
                             f"{', '.join(_POOLING_MODES)})")
    if cfg.get("include_prompt", True) is False:
        raise ValueError("pooling with include_prompt=False is not supported")
    return modes


def _load_layout(path: Path) -> dict:
    """Where the transformer lives, which pooling, normalisation and max length to use."""
    if not path.is_dir():
        raise FileNotFoundError(f"model directory not found: {path}")
    layout = {"bert_dir": path, "pooling": ("mean",), "normalize": False, "max_seq_length": None,
              "tokenizer_dir": path, "lowercase": False}
    modules = path / "modules.json"
    if modules.is_file():
        for m in _read_json(modules):
            kind = m.get("type", "").rsplit(".", 1)[-1]
            sub = path / m.get("path", "")
            if kind == "Transformer":
                layout["bert_dir"] = layout["tokenizer_dir"] = sub
                sb = sub / "sentence_bert_config.json"
                if sb.is_file():
                    sbc = _read_json(sb)
                    layout["max_seq_length"] = sbc.get("max_seq_length")
                    layout["lowercase"] = bool(sbc.get("do_lower_case", False))
            elif kind == "Pooling":
                layout["pooling"] = _pooling_modes(_read_json(sub / "config.json"))
            elif kind == "Normalize":
                layout["normalize"] = True
            else:
                raise ValueError(f"{modules}: module type {m.get('type')!r} is not supported "
                                 "(supported: Transformer, Pooling, Normalize)")
    return layout


def _max_positions(path: Path) -> int:
    bert_dir = _load_layout(path)["bert_dir"]
    cfg = bert_dir / "config.json"
    return int(_read_json(cfg).get("max_position_embeddings", 512)) if cfg.is_file() else 512


def _load_tokenizer(path: Path, max_len: int):
    """A `tokenizers.Tokenizer` truncating to max_len tokens (special tokens included), no padding."""
    from tokenizers import Tokenizer
    tj = path / "tokenizer.json"
    if tj.is_file():
        tok = Tokenizer.from_file(str(tj))
    elif (path / "vocab.txt").is_file():
        from tokenizers import BertWordPieceTokenizer
        tc = path / "tokenizer_config.json"
        lower = _read_json(tc).get("do_lower_case", True) if tc.is_file() else True
        tok = BertWordPieceTokenizer(str(path / "vocab.txt"), lowercase=lower)
    else:
        raise FileNotFoundError(f"no tokenizer.json or vocab.txt in {path}")
    tok.no_padding()
    tok.enable_truncation(max_length=max_len)
    return tok


def _pool(hidden, mask, modes):
    """hidden (B, T, C), mask (B, T) -> (B, C * len(modes)), as sentence-transformers pools."""
    m = mask.astype(_F32)
    outs = []
    for mode in modes:
        if mode == "cls":
            outs.append(hidden[:, 0])
        elif mode == "max":
            outs.append(np.where(m[..., None] > 0, hidden, -np.inf).max(axis=1))
        else:
            s = np.einsum("btc,bt->bc", hidden, m)
            n = np.maximum(m.sum(axis=1, keepdims=True), 1e-9)
            outs.append(s / (n if mode == "mean" else np.sqrt(n)))
    return np.ascontiguousarray(np.concatenate(outs, axis=1) if len(outs) > 1 else outs[0],
                                dtype=_F32)


def _pool_backward(dpooled, hidden, mask, modes):
    """d pooled (B, C * len(modes)) -> d hidden (B, T, C)."""
    b, t, c = hidden.shape
    m = mask.astype(_F32)
    dh = np.zeros((b, t, c), _F32)
    for i, mode in enumerate(modes):
        d = dpooled[:, i * c:(i + 1) * c]
        if mode == "cls":
            dh[:, 0] += d
        elif mode == "max":
            idx = np.where(m[..., None] > 0, hidden, -np.inf).argmax(axis=1)   # (B, C)
            np.add.at(dh, (np.arange(b)[:, None], idx, np.arange(c)[None]), d)
        else:
            n = np.maximum(m.sum(axis=1, keepdims=True), 1e-9)
            dh += (d / (n if mode == "mean" else np.sqrt(n)))[:, None, :] * m[..., None]
    return dh


# ---- SentenceEncoder --------------------------------------------------------------------------
class SentenceEncoder:
    """Sentence embeddings from a sentence-transformers (or plain BERT) directory.

    ``encode(texts, batch_size=32, normalize=True)`` -> float32 (N, dim), or (dim,) for one
    string.  Texts are tokenized with the model's tokenizer.json, truncated to
    ``max_seq_length`` (a warning is logged), sorted by length into batches to save padding
    and returned in input order.
    """

    def __init__(self, path, max_seq_length: int | None = None, pooling=None):
        path = Path(path)
        layout = _load_layout(path)
        self.path = path
        self.model = BERT.from_pretrained(layout["bert_dir"])
        cfg = self.model.config
        limit = cfg.max_position_embeddings
        msl = max_seq_length or layout["max_seq_length"] or min(512, limit)
        if msl > limit:
            raise ValueError(f"max_seq_length {msl} exceeds the model's "
                             f"max_position_embeddings {limit}")
        self.max_seq_length = int(msl)
        self.pooling = tuple([pooling] if isinstance(pooling, str) else pooling or layout["pooling"])
        _pooling_modes({"pooling_mode": list(self.pooling)})     # validate
        self.normalize_module = layout["normalize"]
        self.lowercase = layout["lowercase"]         # sentence-transformers' do_lower_case
        self.tokenizer_dir = layout["tokenizer_dir"]
        self.tokenizer = _load_tokenizer(self.tokenizer_dir, self.max_seq_length)
        pad = self.tokenizer.token_to_id("[PAD]")
        self.pad_id = cfg.pad_token_id if pad is None else pad

    @property
    def dim(self) -> int:
        return self.model.config.hidden_size * len(self.pooling)

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        """Token ids per text, truncated to max_seq_length (logs a warning when it truncates)."""
        for t in texts:
            if not isinstance(t, str):
                raise TypeError(f"texts must be strings, got {type(t).__name__}")
        texts = [t.lower() for t in texts] if self.lowercase else list(texts)
        encs = self.tokenizer.encode_batch(texts)
        n_trunc = sum(1 for e in encs if e.overflowing)
        if n_trunc:
            log.warning("%d of %d texts were longer than max_seq_length=%d tokens and were "
                        "truncated", n_trunc, len(encs), self.max_seq_length)
        return [e.ids for e in encs]

    def _pad(self, seqs):
        t = max(len(s) for s in seqs)
        ids = np.full((len(seqs), t), self.pad_id, np.int64)
        mask = np.zeros((len(seqs), t), np.int64)
        for i, s in enumerate(seqs):
            ids[i, :len(s)] = s
            mask[i, :len(s)] = 1
        return ids, mask

    def _batches(self, seqs, batch_size):
        """(indices, ids, mask) per batch, longest first, so each batch pads little."""
        order = np.argsort([-len(s) for s in seqs], kind="stable")
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            ids, mask = self._pad([seqs[j] for j in idx])
            yield idx, ids, mask

    def _features(self, seqs, batch_size, show_progress_bar=False, desc="encode"):
        out = np.zeros((len(seqs), self.dim), _F32)
        batches = self._batches(seqs, batch_size)
        if show_progress_bar:
            from tqdm.auto import tqdm
            batches = tqdm(batches, total=math.ceil(len(seqs) / batch_size), desc=desc)
        for idx, ids, mask in batches:
            hidden, _, _ = self.model.run(ids, mask)
            out[idx] = _pool(hidden, mask, self.pooling)
        return out

    def encode(self, texts, batch_size: int = 32, normalize: bool = True,
               show_progress_bar: bool = False) -> np.ndarray:
        single = isinstance(texts, str)
        texts = [texts] if single else list(texts)
        if batch_size < 1:
            raise ValueError(f"encode: batch_size must be >= 1, got {batch_size}")
        if not texts:
            return np.zeros((0, self.dim), _F32)
        emb = self._features(self.tokenize(texts), batch_size, show_progress_bar)
        if normalize or self.normalize_module:
            emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        return emb[0] if single else emb


class _Pool(Function):
    """Pooling of the last hidden state as an autograd node (see ``_pool``)."""

    def forward(self, hidden, *, mask, modes):
        self.hidden, self.mask, self.modes = hidden, mask, modes
        return _pool(hidden, mask, modes)

    def backward(self, d):
        return _pool_backward(d, self.hidden, self.mask, self.modes)


# ---- TextClassifier -----------------------------------------------------------------------------
class TextClassifier:
    """A BERT encoder + pooling + Linear head, fine-tuned end to end.

    ``path``: a sentence-transformers or BERT checkpoint directory (its pooling is used, or
    ``pooling`` = 'mean' / 'cls' / 'max'), or a directory written by ``save_pretrained``
    (use ``TextClassifier.from_pretrained``).  Labels may be strings or ints; their sorted
    list is kept as ``labels``.
    """

    def __init__(self, path, labels=None, pooling=None, max_seq_length: int | None = None,
                 seed: int = 0):
        if max_seq_length is None:     # default: 128 tokens, or less if the model is shorter
            max_seq_length = min(128, _max_positions(Path(path)))
        self.encoder = SentenceEncoder(path, max_seq_length=max_seq_length, pooling=pooling)
        self.seed = seed
        self.labels = None
        self.head = None
        if labels is not None:
            self._set_labels(list(labels))

    def _set_labels(self, labels):
        if len(labels) < 2:
            raise ValueError(f"TextClassifier: need at least 2 classes, got {labels}")
        if len(set(labels)) != len(labels):
            raise ValueError("TextClassifier: labels must be distinct")
        self.labels = list(labels)
        self.head = Linear(self.encoder.dim, len(labels))
        rng = np.random.default_rng(self.seed)   # BERT's initializer: N(0, 0.02), zero bias
        self.head.weight.data[...] = rng.normal(0.0, 0.02, self.head.weight.shape)
        self.head.bias.data[...] = 0.0

    def _label_ids(self, labels):
        index = {lab: i for i, lab in enumerate(self.labels)}
        try:
            return np.array([index[lab] for lab in labels], np.int64)
        except KeyError as e:
            raise ValueError(f"TextClassifier: unknown label {e.args[0]!r}; known labels: "
                             f"{self.labels}") from None

    def parameters(self):
        return list(self.encoder.model.parameters()) + [self.head.weight, self.head.bias]

    # -- training -----------------------------------------------------------------------------
    def fit(self, texts, labels, epochs: int = 1, lr: float = 5e-5, batch_size: int = 16,
            val_texts=None, val_labels=None, weight_decay: float = 0.01,
            warmup: float = 0.1, max_grad_norm: float | None = 1.0,
            show_progress_bar: bool = True, seed: int | None = None) -> list[dict]:
        """Fine-tune encoder and head with AdamW (linear warm-up over ``warmup`` of the steps,
        then linear decay).  Returns history: one dict per epoch with 'epoch', 'loss'
        (mean train loss) and, with validation data, 'val_accuracy'."""
        from tqdm.auto import tqdm
        texts, labels = list(texts), list(labels)
        if len(texts) != len(labels):
            raise ValueError(f"fit: {len(texts)} texts but {len(labels)} labels")
        if not texts:
            raise ValueError("fit: no training texts")
        if self.labels is None:
            self._set_labels(sorted(set(labels), key=lambda v: (str(type(v)), v)))
        y = self._label_ids(labels)
        if (val_texts is None) != (val_labels is None):
            raise ValueError("fit: give both val_texts and val_labels, or neither")
        seqs = self.encoder.tokenize(texts)
        rng = np.random.default_rng(self.seed if seed is None else seed)
        params = self.parameters()
        # no weight decay on biases and LayerNorm weights (1-D), as in BERT fine-tuning
        opt = optim.AdamW([{"params": [p for p in params if p.ndim > 1]},
                           {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}],
                          lr=lr, weight_decay=weight_decay)
        opt.zero_grad(set_to_none=False)
        steps_per_epoch = math.ceil(len(texts) / batch_size)
        total = steps_per_epoch * epochs
        n_warm = int(warmup * total)
        model, head, modes = self.encoder.model, self.head, self.encoder.pooling
        history, step = [], 0
        for epoch in range(1, epochs + 1):
            perm = rng.permutation(len(texts))
            bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch}/{epochs}",
                       disable=not show_progress_bar)
            losses = []
            for s in bar:
                idx = perm[s * batch_size:(s + 1) * batch_size]
                ids, mask = self.encoder._pad([seqs[i] for i in idx])
                cur = lr * (step + 1) / max(1, n_warm) if step < n_warm else \
                    lr * max(0.0, (total - step) / max(1, total - n_warm))
                for g in opt.param_groups:
                    g["lr"] = cur
                loss = self._train_step(model, head, modes, ids, mask, y[idx])
                if max_grad_norm:
                    clip_grad_norm_(params, max_grad_norm)
                opt.step()
                opt.zero_grad(set_to_none=False)
                losses.append(loss)
                step += 1
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
            rec = {"epoch": epoch, "loss": float(np.mean(losses))}
            if val_texts is not None:
                rec["val_accuracy"] = self.score(val_texts, val_labels)
            log.info("epoch %d: %s", epoch, rec)
            history.append(rec)
        return history

    @staticmethod
    def _train_step(model, head, modes, ids, mask, y):
        """One forward + backward (autograd); gradients accumulate into every parameter's
        .grad; returns the loss."""
        with autograd.enable_grad():
            hidden = model(ids, mask)
            logits = head(_Pool.apply(hidden, mask=mask, modes=modes))
            loss = F.cross_entropy(logits, y)
            loss.backward()
        return loss.item()

    # -- inference ----------------------------------------------------------------------------
    def _check_ready(self):
        if self.head is None:
            raise RuntimeError("TextClassifier: not trained yet (call fit or from_pretrained)")

    def predict_proba(self, texts, batch_size: int = 32) -> np.ndarray:
        """Class probabilities (N, n_classes), columns in the order of ``labels``."""
        self._check_ready()
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts:
            return np.zeros((0, len(self.labels)), _F32)
        feats = self.encoder._features(self.encoder.tokenize(texts), batch_size)
        logits = K.linear(feats, self.head.weight.data, self.head.bias.data)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        return p

    def predict(self, texts, batch_size: int = 32) -> np.ndarray:
        """Predicted labels (an array of the label type: str or int)."""
        p = self.predict_proba(texts, batch_size)
        return np.asarray([self.labels[i] for i in p.argmax(axis=1)])

    def score(self, texts, labels) -> float:
        """Accuracy on (texts, labels)."""
        labels = list(labels)
        if not labels:
            raise ValueError("score: no texts")
        texts = list(texts)
        if len(texts) != len(labels):
            raise ValueError(f"score: {len(texts)} texts but {len(labels)} labels")
        self._label_ids(labels)                               # unknown labels are an error
        pred = self.predict(texts)
        return float(np.mean([a == b for a, b in zip(pred.tolist(), labels)]))

    # -- checkpoints --------------------------------------------------------------------------
    def save_pretrained(self, path) -> None:
        """Write the encoder (config.json + model.safetensors, transformers-loadable), its
        tokenizer files, classifier_config.json and classifier.safetensors."""
        from safetensors.numpy import save_file
        self._check_ready()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.encoder.model.save_pretrained(path)
        for name in _TOKENIZER_FILES:
            src = self.encoder.tokenizer_dir / name
            if src.is_file() and src.resolve() != (path / name).resolve():
                shutil.copyfile(src, path / name)
        labels = [x.item() if isinstance(x, np.generic) else x for x in self.labels]
        (path / "classifier_config.json").write_text(json.dumps({
            "labels": labels, "pooling": list(self.encoder.pooling),
            "max_seq_length": self.encoder.max_seq_length}, indent=2))
        save_file({"weight": np.ascontiguousarray(self.head.weight.data),
                   "bias": np.ascontiguousarray(self.head.bias.data)},
                  str(path / "classifier.safetensors"))

    @classmethod
    def from_pretrained(cls, path) -> "TextClassifier":
        from safetensors.numpy import load_file
        path = Path(path)
        cc = path / "classifier_config.json"
        if not cc.is_file():
            raise FileNotFoundError(f"no classifier_config.json in {path} (not a saved "
                                    "TextClassifier; to start from an encoder use TextClassifier(path))")
        conf = _read_json(cc)
        clf = cls(path, labels=conf["labels"], pooling=conf["pooling"],
                  max_seq_length=conf["max_seq_length"])
        w = load_file(str(path / "classifier.safetensors"))
        if w["weight"].shape != clf.head.weight.shape:
            raise ValueError(f"{path}: classifier weight shape {w['weight'].shape}, expected "
                             f"{clf.head.weight.shape}")
        clf.head.weight.data = np.ascontiguousarray(w["weight"], dtype=_F32)
        clf.head.bias.data = np.ascontiguousarray(w["bias"], dtype=_F32)
        return clf
