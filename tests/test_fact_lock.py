"""Fact-locked decoding: the figures an answer may write are those of its prompt, on the real 270M."""

from __future__ import annotations

import re
from typing import Any

import pytest

from kit.components.fact_lock import RUNS, FactLock, Figures, free, locked, special_tokens, trailing_run

CONTEXT = (
    "NW-TNT-0042 — Ridgeline 2 Tent\nprice: 329.00\nstock: 12\nCall (541) 555-0187 or care@shop.example.com.\n"
    "Sale starts 2027-03-14 at 9:00. 15% off. 3-season."
)


def test_equivalent_spellings_of_a_figure_are_allowed_and_others_are_not() -> None:
    figures = Figures(CONTEXT)
    for text in ("It is $329", "It is 329.00", "It is $329.00.", "tent NW-TNT-0042", "on March 14th, 2027",
                 "call 555-0187", "save 15%", "a 3-season", "write care@shop.example.com"):  # fmt: skip
        assert figures.finished(text, trailing_run(text)), text
    for text in ("It is $339", "It is 329.50", "tent NW-TNT-0099", "call 555-0188", "save 16%", "bob@shop.example"):
        assert not figures.allows(text, trailing_run(text)), text
    # half-written figures may go on; citations and list markers are never figures
    assert figures.allows("It is $32", "$32") and not figures.finished("It is $32", "$32")
    assert free("see [3", "3") and free("Steps:\n2.", "2.") and not free("It is 2.", "2.") and not free("2.", "2.")
    assert locked("x@y") and locked("a1") and not locked("hello")


@pytest.fixture(scope="module")
def llama() -> Any:
    from llama_cpp import Llama
    from runtime_fixtures import TEST_MODEL

    from kit.components.models import named_gguf

    return Llama(str(named_gguf(TEST_MODEL)), n_ctx=512, n_threads=2, verbose=False)


def complete(llama: Any, prompt: str, lock: bool, tokens: int = 24) -> str:
    from llama_cpp import LogitsProcessorList
    from runtime_fixtures import TEST_MODEL

    from kit.components.models import named_gguf

    processors = None
    if lock:
        vocab = ((i, llama.detokenize([i]).decode("utf-8", "ignore")) for i in range(llama.n_vocab()))
        special = special_tokens(named_gguf(TEST_MODEL), lambda: vocab)

        def piece(i: int) -> bytes:
            return llama.detokenize([i])

        def tokenize(text: str) -> list[int]:
            return llama.tokenize(text.encode(), add_bos=False, special=False)

        processors = LogitsProcessorList([FactLock(prompt, special, piece, tokenize)])
    out = llama.create_completion(prompt, max_tokens=tokens, temperature=0, logits_processor=processors)
    return out["choices"][0]["text"]  # type: ignore[index]


def test_a_figure_the_prompt_lacks_cannot_be_written(llama: Any) -> None:
    prompt = "Counting: 1, 2, 3, 4, 5, 6, 7,"
    free_run = complete(llama, prompt, lock=False)
    assert re.search(r"\b8\b", free_run), free_run  # unlocked, the model counts on
    locked_run = complete(llama, prompt, lock=True)
    figures = Figures(prompt)
    written = [m.group() for m in RUNS.finditer(locked_run) if locked(m.group())]
    assert all(
        figures.finished(locked_run[: m.end()], m.group()) for m in RUNS.finditer(locked_run) if locked(m.group())
    )
    assert "8" not in "".join(written), locked_run


def test_a_figure_in_the_prompt_is_copied_exactly(llama: Any) -> None:
    prompt = f"{CONTEXT}\nQ: What does the Ridgeline 2 Tent cost?\nA: The Ridgeline 2 Tent costs $"
    answer = complete(llama, prompt, lock=True, tokens=8)
    assert answer.startswith(("329", "329.00")), answer


@pytest.mark.parametrize("gguf", ["embedded:gemma-3-270m", "embedded:smollm2-135m-instruct"])
def test_the_engine_locks_figures_by_default_for_each_tokenizer(gguf: str) -> None:
    from runtime_fixtures import ROOT

    from kit.components.llm import LlamaEngine
    from kit.settings import ModelSettings, Sampling

    settings = ModelSettings(gguf=gguf, n_ctx=512, sampling=Sampling(max_tokens=24, temperature=0.0))
    engine = LlamaEngine(settings, ROOT)
    assert engine.figure_tokens, "the fact lock is on by default"
    prompt = "Counting: 1, 2, 3, 4, 5, 6, 7,"
    locked_run = "".join(engine.stream_prompt(prompt))
    figures = Figures(prompt)
    written = [m for m in RUNS.finditer(locked_run) if locked(m.group())]
    assert all(figures.finished(locked_run[: m.end()], m.group()) for m in written), locked_run
    engine.figure_tokens = None
    assert re.search(r"\b8\b", "".join(engine.stream_prompt(prompt))), "unlocked, the model counts on"
