"""A real OpenAI-compatible engine as `model.server`: llama-cpp-python's own server (`python -m llama_cpp.server`,
the engine extra) on the test model, started on a free port. Chat, retrieval, guardrails, the claim check and
`kit eval` run through it and give what the same model in-process gives; what a server cannot do is said plainly.

The in-process side runs without the fact lock and the untrained-token filter (they need the logits, which a server
does not give) and both sides with repeat_penalty 1.0 (OpenAI's API has no such field): then greedy answers match
token for token. tests/openai_stub.py stays for what a real engine cannot be made to do (canned answers, faults).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLE
from runtime_fixtures import ENGINE_ALIAS, ENGINE_CTX, SHORT, indexed_copy, tune_domain

SERVER_CTX, ALIAS = ENGINE_CTX, ENGINE_ALIAS
# one thread, as llama-cpp-python's server uses on two cores: llama.cpp's threads wait on each other when the machine
# is busy, and a second server process makes it so
LOCAL_ONLY_OFF = {"fact_lock": False, "suppress_untrained": False, "n_threads": 1}
GREEDY = {"max_tokens": SHORT, "temperature": 0.0, "repeat_penalty": 1.0}


@pytest.fixture(scope="module")
def domains(tmp_path_factory: pytest.TempPathFactory, llama_server: str) -> tuple[Path, Path]:
    """The example domain indexed with the test model in-process, and a copy of it (index included) whose
    model.server is the llama.cpp server."""
    root = tmp_path_factory.mktemp("engine")
    local = indexed_copy(EXAMPLE, root / "local", n_ctx=SERVER_CTX, sampling=GREEDY, **LOCAL_ONLY_OFF)
    served = Path(shutil.copytree(local, root / "served"))
    tune_domain(served, n_ctx=SERVER_CTX, sampling=GREEDY, server={"base_url": llama_server, "model": ALIAS})
    return local, served


def open_chat(domain_dir: Path) -> Any:
    from kit.domain import load_domain
    from kit.services.assistant.chat import ChatService

    return ChatService.open(load_domain(domain_dir))


def test_chat_retrieval_guardrails_and_claim_check_through_the_server_match_the_local_model(domains) -> None:
    from kit.components.llm import LlamaEngine, ServerEngine

    local, served = (open_chat(d) for d in domains)
    assert isinstance(local.engine, LlamaEngine) and isinstance(served.engine, ServerEngine)
    # kit's gemma turns have no system role: the system prompt goes in the first user turn, as kit's own engine
    # renders it (llama-cpp-python's server drops a system message under its gemma format)
    told = [
        {"role": "system", "content": "You are Sam from Example Shop."},
        {"role": "user", "content": "Who are you?"},
    ]
    assert "".join(served.engine.stream(told)) == "".join(local.engine.stream(told))
    question = "What does the folding lantern cost?"
    here, there = local.ask(question), served.ask(question)
    text = there.finish()
    assert there.kind == "answer" and there.model == ALIAS and text.strip()
    # the same documents, the same prompt, so the same greedy answer, checked alike
    assert [s.source for s in there.sources] == [s.source for s in here.sources]
    assert text == here.finish()
    assert there.claims is not None and there.claims.decisions == here.claims.decisions
    # the server's tokenizer is out of reach: kit's estimate of the prompt (a catalogue full of figures) errs on the
    # safe side
    assert there.prompt_tokens >= here.prompt_tokens
    # guardrails answer before any model: the same through a server
    assert served.ask("I want a real person").kind == "handoff"
    assert (
        served.ask("Can you help me debug my Python program?").kind
        == local.ask("Can you help me debug my Python program?").kind
    )


def eval_row(run_kit, domain: Path) -> tuple[str, dict[str, Any]]:
    """`kit eval DOMAIN --split heldout --json`: the model's label and its metrics."""
    result = run_kit("eval", str(domain), "--split", "heldout", "--json", "-q")
    assert result.code == 0, result.err
    (label, row), *_ = json.loads(result.out).items()  # the model, then the safety set's summary
    return label, row


def test_kit_eval_runs_through_the_server(run_kit, domains) -> None:
    served = domains[1]
    label, row = eval_row(run_kit, served)
    assert label == ALIAS and row["model_size_mb"] is None and row["heldout"]["items"] == 3
    answers = [json.loads(line) for line in (served / "build/eval/latest.jsonl").read_text().splitlines()]
    assert {a["model"] for a in answers} == {ALIAS} and len(answers) == 3
    # the scorer read the server's words: the answer item holds text, the unknown item was judged
    assert all(a["answer"].strip() for a in answers) and row["heldout"]["unknown_accuracy"] is not None


@pytest.mark.slow
def test_kit_eval_through_the_server_scores_as_the_local_model(run_kit, domains) -> None:
    (_, here), (_, there) = (eval_row(run_kit, d) for d in domains)
    quality = ("answer_correctness", "citation_correctness", "groundedness", "invented_facts", "unknown_accuracy")
    assert there["heldout"]["items"] == here["heldout"]["items"] == 3
    assert {k: there["heldout"][k] for k in quality} == {k: here["heldout"][k] for k in quality}


def test_a_prompt_over_the_servers_context_is_a_plain_error(domains, llama_server: str) -> None:
    from kit.components.llm import build_engine
    from kit.domain import load_domain
    from kit.errors import ModelError

    settings = load_domain(domains[1]).spec.model.model_copy(update={"n_ctx": 8192})
    engine = build_engine(settings)
    # llama-cpp-python's server answers 200 and ends the stream: kit says so instead of an empty answer
    with pytest.raises(ModelError) as caught:
        "".join(engine.stream([{"role": "user", "content": "lantern " * 3000}]))
    assert str(caught.value).startswith(f"the model server at {llama_server}/chat/completions stopped the answer")
    assert "set model.n_ctx to the server's context" in str(caught.value)


def test_what_a_server_cannot_do_is_said_by_kit_validate(run_kit, domains, caplog) -> None:
    from kit.components.llm import build_engine
    from kit.domain import load_domain

    served = domains[1]
    tune_domain(served, fact_lock=True)
    try:
        result = run_kit("validate", str(served), "--no-embeddings")
        assert result.code == 0, result.err
        assert "warning: model.fact_lock: the fact lock needs the model's logits" in result.err
        build_engine(load_domain(served).spec.model)
        assert any("model.fact_lock" in r.getMessage() and "it is off" in r.getMessage() for r in caplog.records)
    finally:
        tune_domain(served, fact_lock=False)
    # defaults say nothing: only what domain.yaml asks for
    assert "model.fact_lock" not in run_kit("validate", str(served), "--no-embeddings").err


def test_a_refusal_for_length_is_the_context_error() -> None:
    from kit.components.llm import ContextOverflow, ServerEngine
    from kit.settings import ModelSettings, OpenAIServer

    engine = ServerEngine(ModelSettings(server=OpenAIServer(base_url="http://127.0.0.1:9/v1", model="m"), n_ctx=4096))
    # the body llama-cpp-python's server (and vLLM, alike) sends for a request without streaming
    said = "This model's maximum context length is 2048 tokens. However, you requested 2135 tokens."
    body = json.dumps({"error": {"message": said, "type": "invalid_request_error", "code": "context_length_exceeded"}})
    error = engine._refused(400, body)
    assert isinstance(error, ContextOverflow)
    assert str(error) == (
        f"the conversation is longer than the model server's context: {said} — start a new chat, or set model.n_ctx "
        "in domain.yaml to the server's context (now 4096)"
    )
    assert str(engine._refused(401, '{"error": "bad key"}')).endswith("answered 401: bad key")


def test_the_template_is_checked_against_model_gguf_only_when_kit_runs_it() -> None:
    from pydantic import ValidationError

    from kit.settings import ModelSettings

    with pytest.raises(ValidationError, match="chat_template 'gemma' does not fit embedded, an instruct model"):
        ModelSettings.model_validate({"chat_template": "gemma"})  # the default embedded model is a chatml one
    served = ModelSettings.model_validate(
        {"chat_template": "gemma", "server": {"base_url": "http://h/v1", "model": "m"}}
    )
    assert served.chat_template == "gemma"
