"""The embedder: the numpy path gives sentence-transformers' own vectors for queries and whole indexes alike,
without importing torch; other layouts fall back to sentence-transformers."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from kit.components import embedding
from kit.components.embedding import (
    Embedder,
    LeanEncoder,
    SentenceTransformerEncoder,
    lean_layout,
    model_location,
)
from kit.settings import EMBEDDED

TEXTS = [
    "How much is the Ridgeline 2 Backpacking Tent?",
    "x",
    "word " * 400,  # longer than the model's 256-token limit: truncated the same way
    "Für Überweisungen: 12,50 € — ¿sí?",
    "",
]


def test_lean_encoder_matches_sentence_transformers_on_the_embedded_model() -> None:
    embedder = Embedder(EMBEDDED)
    assert isinstance(embedder.model, LeanEncoder)
    reference = SentenceTransformerEncoder(model_location(EMBEDDED)).encode(TEXTS)
    vectors = embedder.embed(TEXTS)
    assert vectors.shape == reference.shape == (len(TEXTS), 384)
    assert np.abs(vectors - reference).max() < 1e-5
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


# The numpy BERT against sentence-transformers (torch) on the same texts: float32 rounding only.
TOLERANCE = 1e-5


def test_a_batch_on_numpy_gives_the_vectors_of_sentence_transformers(monkeypatch) -> None:
    """Indexing sends batches: several numpy batches of mixed lengths (a small token budget forces them) give the
    vectors sentence-transformers gives, and the same as embedding the texts a few at a time, as queries are."""
    monkeypatch.setattr(embedding, "TOKEN_BUDGET", 512)
    embedder = Embedder(EMBEDDED)
    texts = [f"{t} #{i}" for i in range(8) for t in TEXTS]
    batch = embedder.embed(texts)
    assert isinstance(embedder.model, LeanEncoder) and embedder.model._bulk is None  # transformers never loaded
    few = np.concatenate([embedder.embed(texts[i : i + 3]) for i in range(0, len(texts), 3)])
    reference = SentenceTransformerEncoder(model_location(EMBEDDED)).encode(texts)
    assert np.abs(batch - reference).max() < TOLERANCE and np.abs(few - reference).max() < TOLERANCE
    assert embedder.embed([]).shape == (0, 384)


def test_indexing_and_searching_import_neither_torch_nor_transformers(example_copy: Path) -> None:
    """`kit index` and `kit search` on the base install: every chunk embeds on numpy."""
    code = (
        "import sys\n"
        "from kit.domain import load_domain\n"
        "from kit.services.retrieval.ingest import index_domain\n"
        "from kit.services.retrieval.retrieve import Retriever\n"
        f"domain = load_domain({str(example_copy)!r})\n"
        "assert index_domain(domain, progress=False).added > 0\n"
        "assert Retriever.open(domain).retrieve('return policy')\n"
        "print(sorted(m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_opening_the_chat_service_imports_neither_torch_nor_transformers(example_dir: Path) -> None:
    """The serving process's start: retrieval and guardrails embed with numpy, so torch is never imported."""
    code = (
        "import sys\n"
        "from kit.domain import load_domain\n"
        "from kit.services.assistant.chat import ChatService\n"
        f"service = ChatService.open(load_domain({str(example_dir)!r}))\n"
        "assert service.ask('How long do I have to return an item?').sources\n"
        "print(sorted(m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_other_layouts_are_left_to_sentence_transformers(tmp_path: Path) -> None:
    folder = Path(model_location(EMBEDDED))
    assert lean_layout(folder) is not None
    odd = tmp_path / "with-dense"
    shutil.copytree(folder, odd)
    modules = json.loads((odd / "modules.json").read_text())
    modules.append({"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"})
    (odd / "modules.json").write_text(json.dumps(modules))
    assert lean_layout(odd) is None
    pooling = odd / "1_Pooling" / "config.json"
    (odd / "modules.json").write_text(json.dumps(modules[:3]))
    config = json.loads(pooling.read_text())
    pooling.write_text(json.dumps({**config, "pooling_mode_max_tokens": True}))
    assert lean_layout(odd) is None  # mean and max together: not reproduced here
    (odd / "modules.json").unlink()
    assert lean_layout(odd) is None
