"""Save / load Hugging Face style checkpoint directories (config.json + safetensors).

GPT-2: ``load_gpt2_pretrained`` reads ``config.json`` and ``model.safetensors`` (or a sharded
``model.safetensors.index.json``), with or without the ``transformer.`` key prefix; HF's Conv1D
weights (``c_attn``, ``c_proj``, ``c_fc``) are stored (in, out) and are transposed into
ironformer's (out, in) ``Linear`` layout; the ``attn.bias`` / ``attn.masked_bias`` buffers are
ignored. Configurations ironformer cannot compute exactly are refused with ``ValueError``.
``save_gpt2_pretrained`` writes the layout ``transformers.GPT2LMHeadModel.from_pretrained`` reads.

Safetensors files are read by a small reader here (header + raw buffers) so float16 and
bfloat16 checkpoints load too (converted to float32).
"""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np

__all__ = ["read_safetensors", "write_safetensors", "load_gpt2_pretrained", "save_gpt2_pretrained",
           "gpt2_config_from_hf", "hf_config_from_gpt2"]

_ST_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64,
              "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}

_CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def read_safetensors(path) -> dict:
    """``{name: numpy array}`` from a .safetensors file; floating tensors become float32."""
    path = Path(path)
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise ValueError(f"{path}: not a safetensors file (too short)")
        (n,) = struct.unpack("<Q", raw)
        if n > 100_000_000:
            raise ValueError(f"{path}: not a safetensors file (header length {n})")
        header = json.loads(f.read(n))
        buf = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        shape = tuple(info["shape"])
        dt = info["dtype"]
        chunk = buf[start:end]
        if dt == "BF16":
            u = np.frombuffer(chunk, dtype="<u2").astype(np.uint32) << 16
            arr = u.view(np.float32)
        elif dt in _ST_DTYPES:
            arr = np.frombuffer(chunk, dtype=np.dtype(_ST_DTYPES[dt]).newbyteorder("<"))
        else:
            raise ValueError(f"{path}: tensor {name} has unsupported dtype {dt}")
        arr = arr.reshape(shape)
        if arr.dtype.kind == "f":
            arr = arr.astype(np.float32)
        out[name] = np.array(arr, copy=True)
    return out


def write_safetensors(tensors: dict, path, metadata: dict | None = None) -> None:
    """Write ``{name: array}`` atomically (contiguous copies; HF metadata format=pt)."""
    from safetensors.numpy import save_file

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(tmp),
              metadata=metadata or {"format": "pt"})
    os.replace(tmp, path)


def _load_checkpoint_dir(path: Path) -> dict:
    single = path / "model.safetensors"
    index = path / "model.safetensors.index.json"
    if single.is_file():
        return read_safetensors(single)
    if index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
        out = {}
        for shard in sorted(set(weight_map.values())):
            out.update(read_safetensors(path / shard))
        return out
    if (path / "pytorch_model.bin").is_file():
        raise ValueError(f"{path}: only safetensors checkpoints are supported (found pytorch_model.bin; "
                         "re-save it with save_pretrained(safe_serialization=True))")
    raise FileNotFoundError(f"{path}: no model.safetensors or model.safetensors.index.json")


def gpt2_config_from_hf(hf: dict, **overrides):
    """Map a Hugging Face GPT-2 config.json dict onto a GPTConfig; refuse what we cannot honour."""
    from .models.gpt import GPTConfig

    def refuse(msg):
        raise ValueError(f"unsupported GPT-2 configuration: {msg}")

    mt = hf.get("model_type", "gpt2")
    if mt != "gpt2":
        refuse(f"model_type {mt!r} (only 'gpt2' checkpoints are supported)")
    act = hf.get("activation_function", "gelu_new")
    if act not in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast"):
        refuse(f"activation_function {act!r} (ironformer's GPT uses the tanh GELU: gelu_new / "
               "gelu_pytorch_tanh)")
    n_embd = hf.get("n_embd", 768)
    n_inner = hf.get("n_inner")
    if n_inner is not None and n_inner != 4 * n_embd:
        refuse(f"n_inner={n_inner} (only 4 * n_embd = {4 * n_embd} is supported)")
    if hf.get("scale_attn_by_inverse_layer_idx", False):
        refuse("scale_attn_by_inverse_layer_idx=True")
    if not hf.get("scale_attn_weights", True):
        refuse("scale_attn_weights=False")
    if hf.get("add_cross_attention", False):
        refuse("add_cross_attention=True (decoder-only GPT-2 only)")
    if not hf.get("tie_word_embeddings", True):
        refuse("tie_word_embeddings=False (the output layer is tied to the input embedding)")
    # reorder_and_upcast_attn only changes the order/precision of fp16 attention arithmetic;
    # in float32 it is the same function, so it is accepted.
    kw = dict(vocab_size=hf.get("vocab_size", 50257), block_size=hf.get("n_positions", hf.get("n_ctx", 1024)),
              n_layer=hf.get("n_layer", 12), n_head=hf.get("n_head", 12), n_embd=n_embd,
              dropout=0.0, bias=True, layer_norm_epsilon=hf.get("layer_norm_epsilon", 1e-5))
    kw.update(overrides)
    return GPTConfig(**kw)


def hf_config_from_gpt2(cfg) -> dict:
    return {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
        "vocab_size": cfg.vocab_size, "n_positions": cfg.block_size, "n_ctx": cfg.block_size,
        "n_embd": cfg.n_embd, "n_layer": cfg.n_layer, "n_head": cfg.n_head, "n_inner": None,
        "activation_function": "gelu_new", "resid_pdrop": cfg.dropout, "embd_pdrop": cfg.dropout,
        "attn_pdrop": 0.0, "layer_norm_epsilon": cfg.layer_norm_epsilon,
        "initializer_range": 0.02, "scale_attn_weights": True, "use_cache": True,
        "scale_attn_by_inverse_layer_idx": False, "reorder_and_upcast_attn": False,
        "tie_word_embeddings": True, "bos_token_id": None, "eos_token_id": None,
        "torch_dtype": "float32",
    }


def load_gpt2_pretrained(cls, path, **overrides):
    path = Path(path)
    cfg_path = path / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{path}: no config.json (expected a Hugging Face GPT-2 checkpoint directory)")
    config = gpt2_config_from_hf(json.loads(cfg_path.read_text()), **overrides)
    sd = _load_checkpoint_dir(path)
    arrays = {}
    wte = None
    lm_head = None
    for key, arr in sd.items():
        k = key[len("transformer."):] if key.startswith("transformer.") else key
        if k.endswith(".attn.bias") or k.endswith(".attn.masked_bias"):
            continue                                         # causal-mask buffers
        if k == "lm_head.weight":
            lm_head = arr
            continue
        if any(k.endswith(c) for c in _CONV1D):
            arr = np.ascontiguousarray(arr.T)
        if k == "wte.weight":
            wte = arr
        arrays["transformer." + k] = arr
    if lm_head is not None and wte is not None and not np.array_equal(lm_head, wte):
        raise ValueError(f"{path}: lm_head.weight differs from transformer.wte.weight; "
                         "untied output embeddings are not supported")
    model = cls(config, init_weights=False)
    try:
        model.load_arrays(arrays, strict=True)
    except (KeyError, ValueError) as e:
        raise ValueError(f"{path}: checkpoint does not match its config: {e}") from None
    model.eval()
    return model


def save_gpt2_pretrained(model, path) -> None:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    cfg = model.config
    out = {}
    for name, arr in model.arrays().items():
        if any(name.endswith(c) for c in _CONV1D):
            arr = np.ascontiguousarray(arr.T)
        out[name] = arr
    C = cfg.n_embd
    if not cfg.bias:                                         # HF GPT-2 always has biases: write zeros
        for i in range(cfg.n_layer):
            p = f"transformer.h.{i}."
            for k, n in (("ln_1.bias", C), ("ln_2.bias", C), ("attn.c_attn.bias", 3 * C),
                         ("attn.c_proj.bias", C), ("mlp.c_fc.bias", 4 * C), ("mlp.c_proj.bias", C)):
                out.setdefault(p + k, np.zeros(n, np.float32))
        out.setdefault("transformer.ln_f.bias", np.zeros(C, np.float32))
    write_safetensors(out, path / "model.safetensors")
    tmp = path / "config.json.tmp"
    tmp.write_text(json.dumps(hf_config_from_gpt2(cfg), indent=2))
    os.replace(tmp, path / "config.json")
