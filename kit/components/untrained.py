"""Tokens a model never learned, found from its own embeddings, so generation never picks them.

A base model's reserved tokens (``<unused0>`` … in Gemma) were never trained: their embeddings sit together,
near one direction, along with thousands of rare tokens pretraining barely saw. Gemma 3's ``<end_of_turn>``
is one of them in the base model (it was only trained in the instruction-tuned one). Fine-tuning teaches the
model to end its answer with ``<end_of_turn>``; with tied embeddings that lifts every token near it too, and
a lightly tuned model then ends its answers with "IsResolver" or "<unused72>" instead, and runs on. Banning
the tokens that sit with the reserved ones (cosine similarity to their mean embedding above ``THRESHOLD``),
except the template's own stop tokens, lets the right one win.

Measured on the embedded Gemma 3 270M: the reserved tokens' mean direction has cosine 0.99 with
``<end_of_turn>``, 0.85–0.93 with the junk tokens the tuned model produced, and below 0.3 with ordinary words
(" the" −0.28, " catalogue" 0.14, "문의" 0.27); 10,612 of 262,144 tokens are above 0.6. The list is computed
once per model file (a few seconds to read the GGUF) and cached.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from kit.components.models import cache_dir
from kit.files import replace_with

if TYPE_CHECKING:
    import numpy as np

THRESHOLD = 0.6
RESERVED = re.compile(r"<unused\d+>")
MIN_RESERVED = 16  # fewer reserved tokens than this: no reliable direction, nothing is banned
BLOCK = 16384  # embedding rows dequantised at a time


def untrained_tokens(gguf_path: Path, keep: Sequence[str]) -> np.ndarray:
    """Ids of the model's untrained tokens, minus those whose text is in ``keep`` (the stop tokens); cached."""
    import numpy as np

    stat = gguf_path.stat()
    key = hashlib.sha256(f"{gguf_path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}:{THRESHOLD}".encode()).hexdigest()
    cached = cache_dir() / "untrained" / f"{key[:32]}.npz"
    if cached.is_file():
        data = np.load(cached)
        ids, texts = data["ids"], data["texts"]
    else:
        ids, texts = _find(gguf_path)

        def save(tmp: Path) -> None:
            with tmp.open("wb") as out:  # a file, not a name: np.savez would add ".npz" to the temporary name
                np.savez(out, ids=ids, texts=texts)

        replace_with(cached, save, cache=True)  # a read-only model cache (the image lists them at build time)
    return ids[~np.isin(texts, list(keep))] if len(ids) else ids


def _find(gguf_path: Path) -> tuple[np.ndarray, np.ndarray]:
    import gguf
    import numpy as np

    reader = gguf.GGUFReader(str(gguf_path))
    field = reader.fields.get("tokenizer.ggml.tokens")
    embd = next((t for t in reader.tensors if t.name == "token_embd.weight"), None)
    if field is None or embd is None:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=str)
    tokens = [bytes(field.parts[i]).decode("utf-8", "replace") for i in field.data]
    reserved = np.array([i for i, t in enumerate(tokens) if RESERVED.fullmatch(t)], dtype=np.int64)
    if len(reserved) < MIN_RESERVED:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=str)
    direction = _unit(gguf.quants.dequantize(embd.data[reserved], embd.tensor_type).mean(axis=0))
    similar = []
    for start in range(0, len(tokens), BLOCK):
        rows = gguf.quants.dequantize(embd.data[start : start + BLOCK], embd.tensor_type)
        norms = np.linalg.norm(rows, axis=1) + 1e-12
        similar.append(np.nonzero(rows @ direction / norms > THRESHOLD)[0] + start)
    ids = np.union1d(np.concatenate(similar), reserved)
    return ids, np.array([tokens[i] for i in ids])


def _unit(vector: np.ndarray) -> np.ndarray:
    import numpy as np

    return vector / (np.linalg.norm(vector) + 1e-12)
