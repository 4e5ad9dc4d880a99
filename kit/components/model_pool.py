"""Each base model loaded once for several domains (``kit serve domains/a domains/b``): the domains on one GGUF share
one llama.cpp model and one context, and each turn sets its own domain's LoRA adapters before it runs.

What llama-cpp-python 0.3.36 offers: ``llama_adapter_lora_init`` loads any number of adapters against one loaded model
(the templates' r=8 adapters are 1.5 MB each), and ``llama_set_adapters_lora`` sets a context's whole adapter set at
once (an empty set clears it) in well under a millisecond; the base weights are untouched, so the model stays
memory-mapped. What a switch costs is the KV cache: it was computed under the other domain's adapters, so the next
prompt is evaluated in full instead of from its cached prefix. A context per domain would keep each domain's cache,
for its KV memory (~75 MB a context for Gemma 3 270M at n_ctx 4096): bench/multidomain.py measures both, and a shared
context is what kit does, so three domains cost little more memory than one.

Domains share a load when their GGUF, ``n_gpu_layers`` and ``n_threads`` are equal; the shared context is as long as
the longest ``n_ctx`` among them, and each domain's prompts are still held to its own ``n_ctx``. Domains on one GGUF
with different ``n_gpu_layers`` or ``n_threads`` get a load each, and a warning names them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from kit.components.llm import Engine, LlamaEngine, adapter_handle, build_engine, load_llama, model_path, set_adapters
from kit.domain import Domain
from kit.settings import ModelSettings

logger = logging.getLogger(__name__)

AdapterSet = tuple[tuple[Path, float], ...]  # (adapter file, scale), as set on the context


@dataclass(frozen=True)
class LoadKey:
    """What makes two domains' models one load: the same file, loaded the same way."""

    path: Path
    n_gpu_layers: int
    n_threads: int | None


def load_key(settings: ModelSettings, root: Path) -> LoadKey | None:
    """The load a domain's model shares with others; None for a model server (nothing loads in kit)."""
    if settings.server is not None:
        return None
    return LoadKey(model_path(settings.gguf, root).resolve(), settings.n_gpu_layers, settings.n_threads)


class SharedModel:
    """A loaded GGUF and its one context, for the engines of several domains. One turn at a time holds ``lock``;
    each takes it through ``engage``, which then sets that domain's adapters if others are set."""

    def __init__(self, settings: ModelSettings, path: Path) -> None:
        self.path = path
        self.llm = load_llama(settings, path, [])  # adapters are set per turn, never merged: mmap stays on
        self.lock = threading.Lock()
        self.handles: dict[Path, Any] = {}
        self.active: AdapterSet = ()
        self.switches = 0

    def engage(self, adapters: Sequence[Path], scales: Sequence[float]) -> Engaged:
        """The lock a domain's engine takes for a turn: it waits for the model, then sets ``adapters``."""
        for path in adapters:
            if path not in self.handles:
                self.handles[path] = adapter_handle(self.llm, path)
        return Engaged(self, tuple(zip(adapters, scales, strict=True)))

    def use(self, adapters: AdapterSet) -> None:
        """Set ``adapters`` on the context (the caller holds ``lock``); a change drops the KV cache made under the
        previous ones, so the next prompt is evaluated from its start."""
        if adapters == self.active:
            return
        paths = [p for p, _ in adapters]
        set_adapters(self.llm, [self.handles[p] for p in paths], [s for _, s in adapters], paths)
        self.llm.reset()
        self.active = adapters
        self.switches += 1


class Engaged:
    """The shared model's lock as one domain takes it: entering waits for the model, then sets the domain's adapters."""

    def __init__(self, model: SharedModel, adapters: AdapterSet) -> None:
        self.model = model
        self.adapters = adapters

    def __enter__(self) -> None:
        self.model.lock.acquire()
        try:
            self.model.use(self.adapters)
        except BaseException:
            self.model.lock.release()
            raise

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:  # fmt: skip
        self.model.lock.release()


class ModelPool:
    """The engines of several domains, each distinct load (``LoadKey``) made once."""

    def __init__(self) -> None:
        self.models: dict[LoadKey, SharedModel] = {}

    def engines(self, domains: Sequence[Domain]) -> list[Engine]:
        """An engine per domain, in order: local GGUFs through the shared loads, a model server's as it is."""
        keys = [load_key(d.spec.model, d.root) for d in domains]
        _warn_split_loads(domains, keys)
        for key in dict.fromkeys(k for k in keys if k is not None):
            if key not in self.models:
                group = [d.spec.model for d, k in zip(domains, keys, strict=True) if k == key]
                longest = group[0].model_copy(update={"n_ctx": max(s.n_ctx for s in group)})
                self.models[key] = SharedModel(longest, key.path)
        return [
            build_engine(d.spec.model, d.root) if k is None else LlamaEngine(d.spec.model, d.root, self.models[k])
            for d, k in zip(domains, keys, strict=True)
        ]


def _warn_split_loads(domains: Sequence[Domain], keys: Sequence[LoadKey | None]) -> None:
    """A warning for each GGUF loaded more than once because its domains load it differently."""
    loads: dict[Path, list[str]] = {}
    for domain, key in zip(domains, keys, strict=True):
        if key is not None:
            loads.setdefault(key.path, []).append(f"{domain.name} (n_gpu_layers {key.n_gpu_layers}, "
                                                  f"n_threads {key.n_threads or 'all'})")  # fmt: skip
    for path, names in loads.items():
        if len({k for k in keys if k is not None and k.path == path}) > 1:
            logger.warning("%s loads more than once, for %s: give them the same model.n_gpu_layers and "
                           "model.n_threads to load it once", path.name, "; ".join(names))  # fmt: skip
