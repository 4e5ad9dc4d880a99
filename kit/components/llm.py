"""The language model: ONE place builds it, from ``ModelSettings`` with llama.cpp's own names.

Two engines share one interface (``Engine``): ``LlamaEngine`` runs a GGUF in-process with
llama-cpp-python; ``ServerEngine`` talks to any OpenAI-compatible server (llama-server, vLLM).
Both take a message list and stream text. ``LlamaEngine`` renders it with the domain's chat
template; llama-cpp-python keeps the KV cache of the longest unchanged token prefix between calls,
so a follow-up turn whose prompt starts with the previous one only evaluates the new tokens.
"""

from __future__ import annotations

import ctypes
import functools
import json
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from kit.components.chat_template import ChatMessage, ChatTemplate, get_template
from kit.components.models import check_gguf, named_gguf
from kit.components.openai_client import OpenAIClient, Unreachable, error_message
from kit.errors import KitError, ModelError
from kit.model_registry import is_embedded, lookup
from kit.settings import ModelSettings, Sampling

if TYPE_CHECKING:
    from kit.components.model_pool import SharedModel

logger = logging.getLogger(__name__)
SERVER_TIMEOUT_S = 120.0
SERVER_SAMPLING = ("top_k", "repeat_penalty")  # llama.cpp's own sampling fields, sent to a server when set
LLAMA_LOG_ENV = "KIT_LLAMA_LOG"


class ContextOverflow(ModelError):
    """The prompt does not fit in the model's context."""


class Engine(Protocol):
    """What the chat service needs from a model."""

    name: str
    n_ctx: int

    def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        """Tokens the rendered prompt of ``messages`` takes."""
        ...

    def stream(
        self, messages: Sequence[ChatMessage], max_tokens: int | None = None, stop: Sequence[str] = ()
    ) -> Iterator[str]:
        """The assistant's answer to ``messages``, piece by piece, ending before any of ``stop``."""
        ...


def build_engine(settings: ModelSettings, root: Path | None = None) -> Engine:
    """The engine ``settings`` describe; ``root`` resolves relative model paths (the domain folder)."""
    if settings.server is not None:
        return ServerEngine(settings)
    return LlamaEngine(settings, root or Path.cwd())


def model_path(value: str, root: Path) -> Path:
    """The GGUF a spec value names: 'embedded[:<name>]', an absolute path, or one relative to the domain."""
    if is_embedded(value):
        return named_gguf(value)
    path = Path(value)
    return path if path.is_absolute() else root / path


def model_label(settings: ModelSettings) -> str:
    """The model's name as users see it (UI, API, eval): the base, and the LoRA adapters applied to it."""
    if settings.server is not None:
        return settings.server.model
    base = lookup(settings.gguf).name if is_embedded(settings.gguf) else Path(settings.gguf).stem
    adapters = [Path(a.path).stem for a in settings.adapters]
    return f"{base} + LoRA {', '.join(adapters)}" if adapters else base


def overflow(used: int, n_ctx: int) -> ContextOverflow:
    """The plain-sentence error for a prompt that does not fit."""
    return ContextOverflow(
        f"the conversation is longer than the model's context: {used} tokens, the limit is {n_ctx}",
        "start a new chat, ask a shorter question, or raise model.n_ctx in domain.yaml",
    )


class LlamaEngine:
    """A GGUF model run in-process by llama-cpp-python. Calls are serialised: one context, one caller. With ``shared``
    the model is one loaded for several domains (kit/components/model_pool.py): its lock sets this domain's adapters."""

    def __init__(self, settings: ModelSettings, root: Path, shared: SharedModel | None = None) -> None:
        self.settings = settings
        self.template: ChatTemplate = get_template(settings.chat_template)
        self.path = model_path(settings.gguf, root)
        self.name = model_label(settings)
        self.n_ctx = settings.n_ctx
        self.last_prompt = ""
        adapters = [model_path(a.path, root) for a in settings.adapters]
        self.lock: AbstractContextManager[Any]
        if shared is None:
            self.lock, self.llm = threading.Lock(), load_llama(settings, self.path, adapters)
        else:
            self.lock, self.llm = shared.engage(adapters, [a.scale for a in settings.adapters]), shared.llm
        self.processors = _suppressor(self) if settings.suppress_untrained else None
        self.figure_tokens = _figure_tokens(self) if settings.fact_lock else None

    def tokens(self, text: str) -> list[int]:
        """Token ids of a rendered prompt (special tokens parsed, BOS added as at generation)."""
        return self.llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)

    def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return len(self.tokens(self.template.render(messages)))

    def stream(
        self, messages: Sequence[ChatMessage], max_tokens: int | None = None, stop: Sequence[str] = ()
    ) -> Iterator[str]:
        return self.stream_prompt(self.template.render(messages), max_tokens, stop)

    def stream_prompt(self, prompt: str, max_tokens: int | None = None, stop: Sequence[str] = ()) -> Iterator[str]:
        """Stream a completion of an already rendered prompt, stopping at the template's stop strings."""
        self.last_prompt = prompt  # for benchmarks and debugging
        used = len(self.tokens(prompt))
        if used >= self.n_ctx:
            raise overflow(used, self.n_ctx)
        limit = min(max_tokens or self.settings.sampling.max_tokens, self.n_ctx - used)
        return self._generate(prompt, limit, [*self.template.stop, *stop])

    def _processors(self, prompt: str) -> Any:
        """The logits processors for one answer: untrained tokens ruled out; the prompt's figures the only ones."""
        import llama_cpp

        from kit.components.fact_lock import FactLock

        steps = list(self.processors or [])
        if self.figure_tokens is not None:
            steps.append(FactLock(prompt, self.figure_tokens, self._piece, self._tokenize_plain))
        return llama_cpp.LogitsProcessorList(steps) if steps else None

    def _piece(self, token: int) -> bytes:
        return self.llm.detokenize([token])

    def _tokenize_plain(self, text: str) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)

    def _generate(self, prompt: str, max_tokens: int, stop: list[str]) -> Iterator[str]:
        s = self.settings.sampling
        with self.lock:
            self.llm.set_seed(s.seed)
            pieces = self.llm.create_completion(
                prompt,
                max_tokens=max_tokens,
                stop=stop,
                stream=True,
                logits_processor=self._processors(prompt),
                **_sampling(s),
            )
            for piece in pieces:
                text = piece["choices"][0]["text"]  # type: ignore[index]
                if text:
                    yield text


def _suppressor(engine: LlamaEngine) -> Any:
    """A logits processor that rules out the model's untrained tokens; None when it has none."""
    import llama_cpp
    import numpy as np

    from kit.components.untrained import untrained_tokens

    eos = engine.llm.detokenize([engine.llm.token_eos()], special=True).decode("utf-8", "replace")
    banned = untrained_tokens(engine.path, keep=[*engine.template.stop, eos])
    if not len(banned):
        return None

    def suppress(input_ids: Any, scores: Any) -> Any:
        scores[banned] = -np.inf
        return scores

    return llama_cpp.LogitsProcessorList([suppress])


def _figure_tokens(engine: LlamaEngine) -> list[tuple[int, str]]:
    """The model's tokens that hold a digit or an @, for the fact lock (found once per model file, cached)."""
    from kit.components.fact_lock import special_tokens

    def vocabulary() -> Any:
        return ((i, engine._piece(i).decode("utf-8", "ignore")) for i in range(engine.llm.n_vocab()))

    return special_tokens(engine.path, vocabulary)


def _sampling(s: Sampling) -> dict[str, Any]:
    return {"temperature": s.temperature, "top_p": s.top_p, "top_k": s.top_k, "repeat_penalty": s.repeat_penalty}


@functools.cache
def _quiet_llama_log() -> Any:
    """Drop llama.cpp's own log lines (set ``KIT_LLAMA_LOG=1`` to see them): some print whatever ``verbose`` says,
    e.g. one line per layer when a LoRA adapter loads. Kit reports load failures itself."""
    import llama_cpp

    if os.environ.get(LLAMA_LOG_ENV) == "1":
        return None

    @llama_cpp.llama_log_callback
    def drop(level: int, text: bytes, user_data: Any) -> None:
        return None

    llama_cpp.llama_log_set(drop, ctypes.c_void_p(0))
    return drop  # kept alive by the cache: llama.cpp holds a pointer to it


def load_llama(settings: ModelSettings, path: Path, adapters: list[Path]) -> Any:
    """Build the ``llama_cpp.Llama``; a missing or corrupt file is a ModelError, found before llama.cpp."""
    check_gguf(path)
    for adapter in adapters:
        check_gguf(adapter, "model.adapters")
    import llama_cpp

    _quiet_llama_log()

    try:
        llm = llama_cpp.Llama(
            model_path=str(path),
            n_ctx=settings.n_ctx,
            n_threads=settings.n_threads or os.cpu_count() or 1,
            n_gpu_layers=settings.n_gpu_layers,
            seed=settings.sampling.seed,
            use_mmap=not adapters,  # as llama-cpp-python does for its own lora_path
            verbose=False,
        )
    except (ValueError, RuntimeError) as exc:
        raise ModelError(f"llama.cpp could not load {path}: {exc}", "check the file is a complete GGUF model") from None
    if adapters:
        set_adapters(llm, [adapter_handle(llm, p) for p in adapters], [a.scale for a in settings.adapters], adapters)
    return llm


def adapter_handle(llm: Any, path: Path) -> Any:
    """A LoRA GGUF loaded against ``llm``'s model (freed with it), not yet set on any context."""
    import llama_cpp

    check_gguf(path, "model.adapters")
    handle = llama_cpp.llama_adapter_lora_init(llm.model, str(path).encode("utf-8"))
    if not handle:
        raise ModelError(f"LoRA adapter {path} could not be loaded", "export it again with `kit export`")
    llm._stack.callback(llama_cpp.llama_adapter_lora_free, handle)
    return handle


def set_adapters(llm: Any, handles: Sequence[Any], scales: Sequence[float], paths: Sequence[Path]) -> None:
    """Set exactly these adapters on ``llm``'s context, none to clear them (llama-cpp-python's own option takes one)."""
    import llama_cpp

    arr = (llama_cpp.llama_adapter_lora_p_ctypes * len(handles))(*handles)
    weights = (ctypes.c_float * len(scales))(*scales)
    if llama_cpp.llama_set_adapters_lora(llm.ctx, arr, len(handles), weights):
        raise ModelError(f"LoRA adapters {', '.join(map(str, paths))} do not fit this model", "check the base model")


# What a domain may ask of its model that only an in-process engine can do: each needs the model's logits or weights.
LOCAL_ONLY = {
    "fact_lock": "the fact lock needs the model's logits, which an OpenAI-compatible server does not give "
    "(the claim check still drops sentences whose figures no document holds)",
    "suppress_untrained": "ruling out untrained tokens needs the model's logits, which an OpenAI-compatible server "
    "does not give",
    "adapters": "LoRA adapters load in the server, not in kit: start the server with them and name the adapter in "
    "model.server.model",
}


def server_ignores(settings: ModelSettings) -> list[str]:
    """What domain.yaml asks of its model (settings written there, not defaults) that ``model.server`` cannot do."""
    if settings.server is None:
        return []
    asked = {"fact_lock": settings.fact_lock, "suppress_untrained": settings.suppress_untrained}
    asked["adapters"] = bool(settings.adapters)
    return [f"model.{k}: {why}" for k, why in LOCAL_ONLY.items() if k in settings.model_fields_set and asked[k]]


class ServerEngine:
    """An OpenAI-compatible server's ``/chat/completions``, streamed; the server applies its own template.

    Messages go as ``model.chat_template`` reads them: a template without a system role (gemma) gets the system
    prompt in the first user turn, as kit's own engine renders it (llama-cpp-python's server drops a system message
    under its gemma format). Sampling sends OpenAI's own fields, and top_k and repeat_penalty when domain.yaml
    writes them (llama.cpp's servers take them; OpenAI's API refuses them; otherwise the server's defaults apply:
    llama-cpp-python's server penalises repeats at 1.1, llama-server and vLLM at 1.0).
    """

    def __init__(self, settings: ModelSettings) -> None:
        assert settings.server is not None
        self.settings = settings
        self.server = settings.server
        self.template = get_template(settings.chat_template)
        self.name = model_label(settings)
        self.n_ctx = settings.n_ctx
        self.client = OpenAIClient(self.server.base_url, self.server.api_key_env, SERVER_TIMEOUT_S)
        self.url = self.client.chat_url
        for ignored in server_ignores(settings):
            logger.warning("%s; through %s it is off", ignored, self.server.base_url)

    def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return sum(estimate_tokens(m["content"]) + 4 for m in messages) + 2

    def stream(
        self, messages: Sequence[ChatMessage], max_tokens: int | None = None, stop: Sequence[str] = ()
    ) -> Iterator[str]:
        s = self.settings.sampling
        body = {
            "model": self.server.model,
            "messages": [dict(m) for m in self.template.fold_system(messages)],
            "stream": True,
            "max_tokens": max_tokens or s.max_tokens,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "seed": s.seed,
            **{k: getattr(s, k) for k in SERVER_SAMPLING if k in s.model_fields_set},
            **({"stop": list(stop)[:4]} if stop else {}),  # OpenAI accepts at most four
        }
        return self._post(body)

    def _post(self, body: dict[str, Any]) -> Iterator[str]:
        try:
            with self.client.stream_chat(body) as resp:
                if resp.status_code != 200:
                    resp.read()
                    raise self._refused(resp.status_code, resp.text)
                yield from _sse_text(resp.iter_lines(), self.url)
        except Unreachable as exc:
            raise ModelError(
                f"the model server at {self.url} did not answer: {exc}", "check model.server.base_url and that it runs"
            ) from None

    def _refused(self, status: int, text: str) -> KitError:
        """The error for a refused request: a prompt over the server's context in plain words, else its own."""
        said = error_message(text)
        if "context_length_exceeded" in text or "context length" in said or "context window" in said:
            return ContextOverflow(
                f"the conversation is longer than the model server's context: {said}",
                f"start a new chat, or set model.n_ctx in domain.yaml to the server's context (now {self.n_ctx})",
            )
        return ModelError(f"the model server at {self.url} answered {status}: {said}")


def estimate_tokens(text: str) -> int:
    """At least the tokens ``text`` takes, without the tokenizer: every digit and symbol one (Gemma, Qwen and Llama
    split numbers into digits), three characters of the rest one. On the shipped domains' documents Gemma 3 and
    SmolLM2 take 0.66-0.69 of this on average, 0.93 at most; the old 3.5 characters a token fell short by up to 1.7x."""
    dense = sum(1 for c in text if c.isdigit() or not (c.isalnum() or c.isspace()))
    return dense + (len(text) - dense) // 3


def _sse_text(lines: Iterator[str], url: str) -> Iterator[str]:
    """The content deltas of an OpenAI server-sent event stream; one that stops before its end (no finish_reason, no
    [DONE]) is an error."""
    finished = False
    for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        event = json.loads(data)
        if "error" in event:
            raise KitError(f"the model server reported: {event['error']}")
        for choice in event.get("choices", []):
            text = (choice.get("delta") or {}).get("content")
            if text:
                yield text
            finished = finished or bool(choice.get("finish_reason"))
    if finished:
        return
    # llama-cpp-python's server, for one, answers 200 and then ends the stream when the prompt overflows its context
    raise ModelError(
        f"the model server at {url} stopped the answer before its end",
        "see the server's log; a prompt longer than its context does this: set model.n_ctx to the server's context",
    )
