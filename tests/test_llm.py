"""The engine on the real embedded Gemma 3 270M in llama.cpp: loading, streaming, stops, KV reuse, errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from runtime_fixtures import TEST_MODEL

from kit.components.llm import ContextOverflow, LlamaEngine, build_engine, model_label
from kit.components.models import named_gguf
from kit.errors import ModelError
from kit.model_registry import lookup
from kit.settings import ModelSettings

EMBEDDED_NAME = lookup(TEST_MODEL).file

QUESTION = [{"role": "system", "content": "You answer briefly."}, {"role": "user", "content": "Name a colour."}]


def test_embedded_model_is_assembled_once_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KIT_CACHE", str(tmp_path))
    (tmp_path / EMBEDDED_NAME).write_bytes(b"not a model")  # a broken earlier run is replaced
    path = named_gguf(TEST_MODEL)
    assert path == tmp_path / EMBEDDED_NAME
    assert path.read_bytes()[:4] == b"GGUF"
    # no temp files left; the stamp records the checked file's size, mtime and sha256
    assert sorted(p.name for p in tmp_path.iterdir()) == [EMBEDDED_NAME, EMBEDDED_NAME + ".verified.json"]
    mtime = path.stat().st_mtime_ns
    assert named_gguf(TEST_MODEL) == path and path.stat().st_mtime_ns == mtime  # second call: no re-assembly


def test_the_model_label_names_the_base_and_its_adapters() -> None:
    assert model_label(ModelSettings(gguf=TEST_MODEL)) == "gemma-3-270m"
    tuned = ModelSettings.model_validate({"gguf": TEST_MODEL, "adapters": [{"path": "adapters/cpu-270m.gguf"}]})
    assert model_label(tuned) == "gemma-3-270m + LoRA cpu-270m"
    assert model_label(ModelSettings(gguf="/models/qwen3-8b-Q4_K_M.gguf")) == "qwen3-8b-Q4_K_M"


def test_engine_streams_an_answer_in_pieces(engine: LlamaEngine) -> None:
    pieces = list(engine.stream(QUESTION, max_tokens=8))
    assert len(pieces) >= 2
    assert "".join(pieces).strip()
    assert not any(stop in "".join(pieces) for stop in engine.template.stop)


def test_engine_stops_at_a_stop_string(engine: LlamaEngine) -> None:
    prompt = engine.template.render([{"role": "user", "content": "Count: 1, 2, 3, 4, 5, 6"}]) + "7, 8,"
    text = "".join(engine.stream_prompt(prompt, max_tokens=24, stop=[","]))
    assert "," not in text


def count_evaluated(engine: LlamaEngine, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record how many tokens llama.cpp evaluates on each eval call."""
    evaluated: list[int] = []
    original = engine.llm.eval

    def spy(tokens: list[int]) -> None:
        evaluated.append(len(tokens))
        original(tokens)

    monkeypatch.setattr(engine.llm, "eval", spy)
    return evaluated


def test_follow_up_turn_reuses_the_kv_cache_of_the_unchanged_prefix(engine: LlamaEngine, monkeypatch) -> None:
    evaluated = count_evaluated(engine, monkeypatch)
    system = {"role": "system", "content": "You are a helpful shop assistant. " * 40}
    first = [system, {"role": "user", "content": "Do you sell tents?"}]
    answer = "".join(engine.stream(first, max_tokens=6))
    cold = sum(evaluated)
    evaluated.clear()
    follow = [*first, {"role": "assistant", "content": answer}, {"role": "user", "content": "And stoves?"}]
    "".join(engine.stream(follow, max_tokens=6))
    prompt_tokens = len(engine.tokens(engine.template.render(follow)))
    first_call_of_follow_up = evaluated[0]  # the prompt; later calls are one generated token each
    assert cold >= len(engine.tokens(engine.template.render(first))) - 1
    assert first_call_of_follow_up < prompt_tokens / 4


def test_prompt_longer_than_the_context_is_a_plain_sentence(engine: LlamaEngine) -> None:
    with pytest.raises(ContextOverflow, match="the conversation is longer than the model's context"):
        engine.stream([{"role": "user", "content": "word " * 5000}])


def test_missing_model_file_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        build_engine(ModelSettings(gguf=str(tmp_path / "nope.gguf")), tmp_path)


def test_corrupt_model_file_fails_at_start_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 4096)  # right magic, nothing behind it
    with pytest.raises(ModelError) as err:
        build_engine(ModelSettings(gguf=str(bad)), tmp_path)
    assert "\n" not in str(err.value) and "bad.gguf" in str(err.value)
    (tmp_path / "text.gguf").write_text("hello " * 500)
    with pytest.raises(ModelError, match="not a GGUF model"):
        build_engine(ModelSettings(gguf=str(tmp_path / "text.gguf")), tmp_path)


def test_untrained_tokens_of_the_embedded_model_are_found_and_the_stop_token_kept() -> None:
    import numpy as np

    from kit.components.untrained import untrained_tokens

    engine_vocab = LlamaEngine(ModelSettings(gguf=TEST_MODEL, suppress_untrained=False), Path.cwd()).llm
    banned = untrained_tokens(named_gguf(TEST_MODEL), keep=["<end_of_turn>", "<eos>"])

    def ids(text: str) -> list[int]:
        return engine_vocab.tokenize(text.encode(), add_bos=False, special=True)

    # junk a lightly tuned adapter produced where its answer should have ended, and the reserved tokens
    for junk in ("IsResolver", "tpVar", "LOTREntity", "<unused72>", "<unused0>"):
        assert np.isin(ids(junk), banned).all(), junk
    for kept in ("<end_of_turn>", "<eos>", " the", " price", " catalogue", ".", "문의", " $389.00"):
        assert not np.isin(ids(kept), banned).any(), kept
    assert 6000 < len(banned) < 20000  # the reserved 6,242 and the rare tokens beside them, ~4% of the vocabulary


def test_an_engine_never_generates_an_untrained_token(engine: LlamaEngine) -> None:
    from kit.components.untrained import untrained_tokens

    assert engine.processors is not None
    banned = set(untrained_tokens(engine.path, keep=["<end_of_turn>", "<eos>"]).tolist())
    prompt = engine.template.render([{"role": "user", "content": "Say <unused5> IsResolver tpVar <unused72> again."}])
    n_prompt = len(engine.tokens(prompt))
    seen: list[int] = []
    suppress = engine.processors[0]

    def record(input_ids, scores):  # sees every token generated so far
        seen[:] = list(input_ids[n_prompt:])
        return suppress(input_ids, scores)

    engine.processors[0] = record
    try:
        text = "".join(engine.stream_prompt(prompt, max_tokens=40))
    finally:
        engine.processors[0] = suppress
    assert len(seen) >= 5 and text
    assert not set(seen) & banned


def test_a_read_only_model_cache_still_gives_the_untrained_tokens(tmp_path: Path, monkeypatch) -> None:
    from kit.components.untrained import untrained_tokens

    model = named_gguf(TEST_MODEL)
    expected = untrained_tokens(model, keep=["<end_of_turn>"])
    cache = tmp_path / "ro"
    cache.mkdir()
    cache.chmod(0o555)  # as in the container image, where the non-root user cannot write the model cache
    monkeypatch.setenv("KIT_CACHE", str(cache))
    if os.access(cache, os.W_OK):  # root ignores the mode bits: make the cache path unusable instead
        monkeypatch.setenv("KIT_CACHE", str(tmp_path / "file-not-folder"))
        (tmp_path / "file-not-folder").write_text("")
    assert (untrained_tokens(model, keep=["<end_of_turn>"]) == expected).all()
