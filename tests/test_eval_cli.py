"""`kit eval` end to end: an OpenAI-compatible endpoint, the embedded model, the gate, the HTML report."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from openai_stub import cite, openai_stub


def canned(prompt: str) -> str:
    """A big model that gets the lantern right and the return window wrong."""
    if "lantern" in prompt.rsplit("Question:", 1)[-1].lower():
        return f"The Folding Lantern costs $32.00 {cite(prompt, 'docs/catalogue.csv')}."
    return f"You can return unused items within 45 days {cite(prompt, 'docs/policies.md')}."


def raw_answers(domain: Path) -> None:
    """No claim check: the scorer and the report see the model's own words."""
    spec = domain / "domain.yaml"
    spec.write_text(spec.read_text().replace("  chat_template: gemma", "  chat_template: gemma\n  claim_check: false"))


@pytest.fixture
def indexed_example(run_kit, example_copy: Path) -> Path:
    assert run_kit("index", str(example_copy), "-q").code == 0
    return example_copy


def test_endpoint_model_metrics_per_split_and_gate(
    run_kit, indexed_example: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BIG_KEY", "sk-test")
    raw_answers(indexed_example)
    with openai_stub(canned) as (url, requests):
        args = ("eval", str(indexed_example), "--model", f"openai:{url}#big", "--api-key-env", "BIG_KEY", "-q")
        result = run_kit(*args, "--json", "--price-per-mtok", "2.5", "--gate")
    assert result.code == 1, result.err
    row = json.loads(result.out)["big"]
    held, dev = row["heldout"], row["dev"]
    # held-out: the lantern right; Mexico answered with the returns policy's (wrong) 45 days, uncited; the
    # hammock question (not in the documents) answered with a figure instead of "we don't have that"
    assert held["items"] == 3 and held["answer_items"] == 3
    assert held["answer_correctness"] == round(1 / 3, 4) and held["lenient_correctness"] == round(1 / 3, 4)
    assert held["citation_correctness"] == 0.5 and held["invented_facts"] == 2 and held["unknown_accuracy"] == 0.0
    assert held["groundedness"] == round(1 / 3, 4) and held["wrong_yes_no_rate"] == 0.0 and held["recall_at_k"] == 1.0
    assert dev["items"] == 4 and dev["answer_correctness"] == 0.5 and dev["citation_correctness"] == 1.0
    assert dev["refusal_rate"] == 1.0 and dev["handoff_accuracy"] == 1.0 and dev["false_refusal_rate"] == 0.0
    assert held["contaminated_share"] == 0.0 and dev["contaminated_share"] == 0.0
    assert row["model_size_mb"] is None and row["cost_per_1k_conversations"] > 0
    assert len(requests) == 5  # only the five answer items reach the model; guardrails answer the rest
    assert all(r["auth"] == "Bearer sk-test" and r["body"]["model"] == "big" for r in requests)
    # the gate reads the held-out split and names it, with each metric past its default goal
    assert [line for line in result.err.splitlines() if line.startswith("gate:")] == [
        "gate: big: heldout answer_correctness 33% is below the minimum 80%",
        "gate: big: heldout citation_correctness 50% is below the minimum 90%",
        "gate: big: heldout groundedness 33% is below the minimum 100%",
        "gate: big: heldout invented_facts 2 is above the maximum 0",
    ]


def test_the_claim_check_drops_what_no_document_holds_and_quotes_the_passage(run_kit, indexed_example: Path) -> None:
    with openai_stub(canned) as (url, _):
        result = run_kit("eval", str(indexed_example), "--model", f"openai:{url}#big", "-q", "--json")
    assert result.code == 0, result.err
    answers = {
        a["id"]: a for a in map(json.loads, (indexed_example / "build/eval/latest.jsonl").read_text().splitlines())
    }
    # the endpoint's "45 days" is in no document: dropped, and the returns passage is quoted instead, cited
    returns = answers["ex-002"]
    assert returns["fallback"] and returns["passed"] and returns["answer"].startswith("From our Policies: \u201cUnused")
    assert "30 days" in returns["answer"] and returns["answer"].endswith("[1]")
    assert returns["checks"][0].startswith("dropped \u201cYou can return unused items within 45 days")
    assert returns["checks"][0].endswith("45 not in the documents it cites")
    # nothing close enough to quote for a product the shop doesn't sell: it says so
    hammock = answers["ex-h03"]
    assert hammock["answer"] == "I'm sorry, I can't find that in our documents." and hammock["passed"]
    assert answers["ex-001"]["checks"] == [] and not answers["ex-001"]["fallback"]
    assert json.loads(result.out)["big"]["dev"]["fallback_rate"] == 0.5


def test_a_training_question_in_the_eval_set_is_reported(run_kit, indexed_example: Path) -> None:
    train = (indexed_example / "data" / "train.jsonl").read_text().splitlines()
    line = next(i for i, x in enumerate(train, start=1) if "enamel camp mug" in x)
    copied = {"id": "ex-h09", "question": "How much is the enamel camp mug?", "expected_facts": ["14.50"],
              "sources": ["docs/catalogue.csv#EX-MUG-001"]}  # fmt: skip
    heldout = indexed_example / "eval" / "heldout.jsonl"
    heldout.write_text(heldout.read_text() + json.dumps(copied) + "\n")
    result = run_kit("validate", str(indexed_example), "--no-embeddings")
    assert result.code == 0, result.err
    warned = [x for x in result.err.splitlines() if "near-duplicate" in x]
    assert warned == [
        f"warning: {indexed_example}/eval/heldout.jsonl:4: the question is a near-duplicate of the training turn "
        f"at {indexed_example}/data/train.jsonl:{line} (same text) — reword it, ask about another fact, or keep it "
        "out of the held-out set"
    ]
    with openai_stub(canned) as (url, _):
        out = run_kit("eval", str(indexed_example), "--model", f"openai:{url}#big", "-q", "--json")
    assert json.loads(out.out)["big"]["heldout"]["contaminated_share"] == 0.25


def test_report_lists_failed_questions(run_kit, indexed_example: Path) -> None:
    raw_answers(indexed_example)
    with openai_stub(canned) as (url, _):
        report = indexed_example / "out" / "report.html"
        assert (
            run_kit("eval", str(indexed_example), "--model", f"openai:{url}#big", "-q", "--report", str(report)).code
            == 0
        )
    page = report.read_text(encoding="utf-8")
    assert 'id="metrics"' in page and "data:image/png;base64," in page
    assert "ex-002" in page and "invented 45" in page and "45 days" in page and "missing 30 days" in page
    assert (indexed_example / "out" / "report.md").read_text().startswith("# Eval report: example-shop")
    assert (indexed_example / "build" / "eval" / "latest.html").read_text(encoding="utf-8") == page
    answers = [json.loads(x) for x in (indexed_example / "out" / "report.jsonl").read_text().splitlines()]
    wrong = next(a for a in answers if a["id"] == "ex-002")
    assert wrong["model"] == "big" and not wrong["passed"] and "invented 45" in wrong["why"]
    assert "45 days" in wrong["answer"] and {a["model"] for a in answers} == {"big"}
    assert (indexed_example / "build" / "eval" / "latest.jsonl").read_text() == (
        indexed_example / "out" / "report.jsonl"
    ).read_text()


def test_embedded_model_end_to_end(run_kit, indexed_example: Path) -> None:
    spec = indexed_example / "domain.yaml"
    spec.write_text(
        spec.read_text().replace(
            "  chat_template: gemma", "  chat_template: gemma\n  sampling:\n    max_tokens: 24\n    temperature: 0"
        )
    )
    result = run_kit("eval", str(indexed_example), "--model", "base", "--limit", "5", "--json", "-q")
    assert result.code == 0, result.err
    row = json.loads(result.out)["gemma-3-270m"]
    assert row["items"] == 5 and row["ttft_s"] > 0 and row["peak_rss_mb"] > 100
    # --limit takes each split's kinds in turn: a held-out answer and unknown item; a dev answer, refusal, hand-off
    assert row["heldout"]["items"] == 2 and row["dev"]["items"] == 3
    assert row["dev"]["refusal_rate"] == 1.0 and row["dev"]["handoff_accuracy"] == 1.0
    assert 0 <= row["heldout"]["answer_correctness"] <= 1
    # speed is measured on answers the output guard let through; the base model's may all be withheld
    assert row["tokens_per_s"] > 0 or row["dev"]["withheld_rate"] == 1.0
    assert 200 < row["model_size_mb"] < 300


def test_bad_model_spec_is_one_clear_line(run_kit, indexed_example: Path) -> None:
    result = run_kit("eval", str(indexed_example), "--model", "gpt-big")
    assert result.code == 1
    assert result.err.startswith("error: model 'gpt-big' is neither a known name nor an existing .gguf file — ")
    tuned = run_kit("eval", str(indexed_example), "--model", "tuned")
    assert "has no tuned adapter" in tuned.err
    unknown = run_kit("eval", str(indexed_example), "--model", "embedded:gpt-big")
    assert unknown.code == 1 and unknown.err.startswith("error: unknown embedded model 'gpt-big'; known models: ")


def test_an_embedded_model_by_name(run_kit, indexed_example: Path) -> None:
    result = run_kit("eval", str(indexed_example), "--model", "embedded:smollm2-135m-instruct", "--limit", "2", "-q",
                     "--json")  # fmt: skip
    assert result.code == 0, result.err
    row = json.loads(result.out)["smollm2-135m-instruct"]
    assert row["items"] == 2 and row["spec"] == "embedded:smollm2-135m-instruct" and 90 < row["model_size_mb"] < 100


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium (see README, Tests)")
def test_report_renders_in_headless_chromium(run_kit, indexed_example: Path, tmp_path: Path) -> None:
    from PIL import Image

    with openai_stub(canned) as (url, _):
        assert run_kit("eval", str(indexed_example), "--model", f"openai:{url}#big", "-q").code == 0
    page = indexed_example / "build" / "eval" / "latest.html"
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    dom = subprocess.run(
        ["chromium", *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    assert "<table" in dom and ">big</td>" in dom and "Gate" in dom
    shot = tmp_path / "report.png"
    subprocess.run(
        ["chromium", *flags, f"--screenshot={shot}", "--window-size=1280,1400", page.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    image = Image.open(shot).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 16) or []
    assert len(colours) > 50  # a rendered table and plot, not a blank page


def test_the_console_tab_shows_the_latest_report_and_the_customer_ui_has_none(run_kit, indexed_example: Path) -> None:
    import gradio as gr

    from kit.components.llm import ServerEngine
    from kit.domain import load_domain
    from kit.services.assistant.admission import Admission
    from kit.services.assistant.chat import ChatService
    from kit.services.assistant.turns import TurnService
    from kit.services.owner.feedback import FeedbackStore
    from kit.services.owner.insights import InsightsService
    from kit.settings import ModelSettings, OpenAIServer
    from kit.ui.admin.insights import InsightsView
    from kit.ui.app import build_app

    with openai_stub(canned) as (url, _):
        engine = ServerEngine(ModelSettings(server=OpenAIServer(base_url=url, model="big")))
        service = ChatService.open(load_domain(indexed_example), engine=engine)
        turns = TurnService(service, FeedbackStore(indexed_example / "build" / "feedback.sqlite3"), Admission(1))
        console = InsightsView(InsightsService(service.domain, turns.store))
        text, plot = console.eval_report()
        assert text.startswith("No eval report yet — run: `kit eval ")
        assert plot is None
        assert run_kit("eval", str(indexed_example), "--model", f"openai:{url}#big", "-q").code == 0
    text, plot = console.eval_report()
    assert text.startswith("# Eval report: example-shop") and "| big |" in text
    assert plot is not None and Path(plot).read_bytes().startswith(b"\x89PNG")
    customer = build_app(turns)
    assert [b.label for b in customer.blocks.values() if isinstance(b, gr.Tab)] == ["Chat"]
    assert not any(getattr(b, "elem_id", None) == "kit-eval" for b in customer.blocks.values())
