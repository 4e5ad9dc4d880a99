"""A BERT encoder's forward pass in numpy, for sentence embeddings (MiniLM and its kin).

Neither serving nor indexing imports torch or transformers for it: ``kit serve`` and ``kit ask`` start about
eight seconds sooner on two cores, ``kit index`` runs on the base install, and the vectors match transformers'
to float precision. Only the plain BERT shape is handled (absolute positions, exact GELU, post-layer-norm);
``supports`` says whether a folder has it.

Batches are what indexing sends, so the layers work on (tokens, hidden) matrices: one matrix product per
projection (query, key and value fused), the weights used as loaded (BLAS reads them transposed, no copy), the
element-wise steps in place and in blocks that stay in cache.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Abramowitz & Stegun 7.1.26: erf to 1.5e-7, below float32's resolution near 1.
_P = 0.3275911
_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)
BLOCK_ROWS = 64  # token rows per block of the element-wise GELU: 64 x 1536 floats stay in L2


def supports(folder: Path) -> bool:
    """Whether ``folder`` holds a plain BERT this module reproduces (config, safetensors weights, tokenizer.json)."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        config.get("model_type") == "bert"
        and config.get("hidden_act") == "gelu"
        and config.get("position_embedding_type", "absolute") == "absolute"
        and (folder / "model.safetensors").is_file()
        and (folder / "tokenizer.json").is_file()
    )


@dataclass(frozen=True)
class Layer:
    """One encoder layer's weights, each projection ``x @ w.T + b`` on (tokens, hidden) rows."""

    qkv_w: np.ndarray  # (3 * hidden, hidden): query, key and value stacked
    qkv_b: np.ndarray
    out_w: np.ndarray
    out_b: np.ndarray
    norm1: tuple[np.ndarray, np.ndarray]
    up_w: np.ndarray  # (intermediate, hidden)
    up_b: np.ndarray
    down_w: np.ndarray
    down_b: np.ndarray
    norm2: tuple[np.ndarray, np.ndarray]


def _layer(w: dict[str, np.ndarray], p: str) -> Layer:
    names = ("attention.self.query", "attention.self.key", "attention.self.value")
    return Layer(
        qkv_w=np.concatenate([w.pop(p + n + ".weight") for n in names]),
        qkv_b=np.concatenate([w.pop(p + n + ".bias") for n in names]),
        out_w=w[p + "attention.output.dense.weight"],
        out_b=w[p + "attention.output.dense.bias"],
        norm1=(w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"]),
        up_w=w[p + "intermediate.dense.weight"],
        up_b=w[p + "intermediate.dense.bias"],
        down_w=w[p + "output.dense.weight"],
        down_b=w[p + "output.dense.bias"],
        norm2=(w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"]),
    )


class NumpyBert:
    """Token ids in, last hidden states out, like ``BertModel(...).last_hidden_state``."""

    def __init__(self, folder: Path, max_length: int) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        self.config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        self.hidden_size = int(self.config["hidden_size"])
        self.heads = int(self.config["num_attention_heads"])
        self.eps = float(self.config["layer_norm_eps"])
        weights = load_file(str(folder / "model.safetensors"))
        w = {k.removeprefix("bert."): v.astype(np.float32, copy=False) for k, v in weights.items()}
        self.embeddings = {k: v for k, v in w.items() if k.startswith("embeddings.")}
        self.layers = [_layer(w, f"encoder.layer.{i}.") for i in range(int(self.config["num_hidden_layers"]))]
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=min(max_length, int(self.config["max_position_embeddings"])))
        pad_id = int(self.config.get("pad_token_id") or 0)
        self.tokenizer.enable_padding(pad_id=pad_id, pad_token=self.tokenizer.id_to_token(pad_id) or "[PAD]")

    def tokenize(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(ids, attention mask), padded to the longest text of the batch."""
        encoded = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encoded], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encoded], dtype=np.float32)
        return ids, mask

    def hidden(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """The last layer's hidden states, (batch, length, hidden)."""
        e, (batch, length) = self.embeddings, ids.shape
        x = (
            e["embeddings.word_embeddings.weight"][ids]
            + e["embeddings.position_embeddings.weight"][:length]
            + e["embeddings.token_type_embeddings.weight"][0]
        ).reshape(batch * length, self.hidden_size)
        x = layer_norm(x, e["embeddings.LayerNorm.weight"], e["embeddings.LayerNorm.bias"], self.eps)
        masked = ((1.0 - mask) * np.finfo(np.float32).min)[:, None, None, :]
        for layer in self.layers:
            x = self.layer(x, masked, layer, batch)
        return x.reshape(batch, length, self.hidden_size)

    def layer(self, x: np.ndarray, masked: np.ndarray, w: Layer, batch: int) -> np.ndarray:
        """One transformer layer on (tokens, hidden) rows: self-attention, then the feed-forward block, each with
        a residual and a norm."""
        attended = self.attention(x, masked, w, batch) @ w.out_w.T
        attended += w.out_b
        attended += x
        x = layer_norm(attended, *w.norm1, self.eps)
        inner = x @ w.up_w.T
        inner += w.up_b
        out = gelu(inner) @ w.down_w.T
        out += w.down_b
        out += x
        return layer_norm(out, *w.norm2, self.eps)

    def attention(self, x: np.ndarray, masked: np.ndarray, w: Layer, batch: int) -> np.ndarray:
        """Multi-head self-attention over the unmasked tokens; (tokens, hidden)."""
        tokens, hidden = x.shape
        length, size = tokens // batch, hidden // self.heads
        qkv = x @ w.qkv_w.T
        qkv += w.qkv_b
        # (3, batch, heads, length, size), each made contiguous so that the products below are plain GEMMs
        q, k, v = (
            np.ascontiguousarray(a) for a in qkv.reshape(batch, length, 3, self.heads, size).transpose(2, 0, 3, 1, 4)
        )
        q *= np.float32(1.0 / math.sqrt(size))
        scores = q @ k.transpose(0, 1, 3, 2)
        scores += masked
        scores -= scores.max(axis=-1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=-1, keepdims=True)
        out: np.ndarray = (scores @ v).transpose(0, 2, 1, 3).reshape(tokens, hidden)
        return out


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    """Layer norm over the last axis; ``x`` is overwritten."""
    x -= x.mean(axis=-1, keepdims=True)
    var = np.square(x).mean(axis=-1, keepdims=True)
    var += eps
    x /= np.sqrt(var)
    x *= weight
    x += bias
    return x


def gelu(x: np.ndarray) -> np.ndarray:
    """Exact GELU, x * Phi(x), with erf from Abramowitz & Stegun; ``x`` (tokens, width) is overwritten.

    x * Phi(x) = x/2 * (1 + sign(x) * (1 - r)) with r = poly(t) * exp(-z^2), z = |x|/sqrt(2), t = 1/(1 + P z).
    """
    rows = min(BLOCK_ROWS, x.shape[0])
    z, t, r = (np.empty((rows, x.shape[1]), dtype=np.float32) for _ in range(3))
    for start in range(0, x.shape[0], rows):
        xb = x[start : start + rows]
        n = xb.shape[0]
        zb, tb, rb = z[:n], t[:n], r[:n]
        np.abs(xb, out=zb)
        zb *= np.float32(1.0 / math.sqrt(2.0))
        np.multiply(zb, np.float32(_P), out=tb)
        tb += np.float32(1.0)
        np.reciprocal(tb, out=tb)
        np.multiply(tb, np.float32(_A[4]), out=rb)
        for a in (_A[3], _A[2], _A[1], _A[0]):
            rb += np.float32(a)
            rb *= tb
        np.square(zb, out=zb)
        np.negative(zb, out=zb)
        np.exp(zb, out=zb)
        rb *= zb  # r = 1 - erf(z)
        np.copysign(rb, xb, out=tb)  # sign(x) * r
        np.sign(xb, out=zb)
        zb += np.float32(1.0)
        zb -= tb  # 1 + sign(x) * (1 - r)
        xb *= zb
        xb *= np.float32(0.5)
    return x
