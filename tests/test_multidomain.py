"""Several domains in one server (`kit serve domains/retail domains/clinic data_templates/example`): one Gemma 3 270M
load for the three, retail's and clinic's own LoRA adapters set per turn (the example has none), each answering from its
own documents with its own guardrails, UI and feedback store."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from runtime_fixtures import ROOT, TEST_MODEL, indexed_copy, serve, tune_domain

from kit.errors import KitError

ADAPTER = [{"path": "adapters/cpu-270m.gguf"}]
PROMPT = "<start_of_turn>user\nWhat should I bring?<end_of_turn>\n<start_of_turn>model\n"


@dataclass
class Multi:
    url: str
    services: list[Any]
    pool: Any
    loads: list[str]


@pytest.fixture(scope="module")
def multi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Multi]:
    """Retail and clinic with their adapters, the example without one, on one server; llama.cpp's loads counted."""
    import llama_cpp

    from kit.server.multi import build_multi_server, open_domains

    root = tmp_path_factory.mktemp("multi")
    dirs = [indexed_copy(ROOT / "domains" / name, root / name, adapters=ADAPTER) for name in ("retail", "clinic")]
    dirs.append(indexed_copy(ROOT / "data_templates" / "example", root / "example", n_ctx=2048))
    loads: list[str] = []

    class Counted(llama_cpp.Llama):  # the real class, its loads recorded
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            loads.append(str(kwargs.get("model_path")))
            super().__init__(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(llama_cpp, "Llama", Counted)
        services, pool = open_domains(dirs)
    for url in serve(build_multi_server(services)):
        yield Multi(url, services, pool, loads)


def ask(url: str, model: str, question: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": question}]}
    return httpx.post(url + "/v1/chat/completions", json=body, timeout=120)


def test_the_base_model_loads_once_for_three_domains_with_the_longest_context(multi: Multi) -> None:
    assert len(multi.loads) == 1 and multi.loads[0].endswith("gemma-3-270m-Q4_K_M.gguf")
    (shared,) = multi.pool.models.values()
    assert shared.llm.n_ctx() == 4096  # retail's and clinic's n_ctx; the example's prompts stay within its 2048
    assert [s.engine.n_ctx for s in multi.services] == [4096, 4096, 2048]
    assert len({id(s.engine.llm) for s in multi.services}) == 1


def test_each_domain_s_turn_runs_under_its_own_adapters(multi: Multi) -> None:
    retail, clinic, example = (s.engine for s in multi.services)
    (shared,) = multi.pool.models.values()

    def answer(engine: Any) -> str:
        return "".join(engine.stream_prompt(PROMPT, max_tokens=8))

    first = answer(retail)
    assert [p.parent.parent.name for p, _ in shared.active] == ["retail"]
    with_clinic, plain = answer(clinic), answer(example)
    assert shared.active == ()  # the example has no adapter: none set
    assert len({first, with_clinic, plain}) == 3  # each adapter changes the answer to the same prompt
    assert answer(retail) == first  # back on retail's adapter, nothing of the others' KV cache left


def test_v1_models_lists_every_domain_and_an_unknown_model_is_refused(multi: Multi) -> None:
    listed = httpx.get(multi.url + "/v1/models", timeout=30).json()["data"]
    assert [m["id"] for m in listed] == ["retail", "clinic", "example-shop"]
    assert "LoRA cpu-270m" in listed[0]["engine"] and "LoRA" not in listed[2]["engine"]
    refused = ask(multi.url, "travel", "Hello?")
    assert refused.status_code == 404
    error = refused.json()["error"]
    assert error["code"] == "model_not_found" and "retail, clinic, example-shop" in error["message"]


def test_each_domain_answers_from_its_own_documents(multi: Multi) -> None:
    retail = ask(multi.url, "retail", "How much is the Ridgeline 2 Backpacking Tent?").json()
    clinic = ask(multi.url, "clinic", "How much is a New Patient Visit?").json()
    assert retail["model"] == "retail" and clinic["model"] == "clinic"
    retail_files = {s["source"] for s in retail["sources"]}
    clinic_files = {s["source"] for s in clinic["sources"]}
    assert "docs/catalogue.csv" in retail_files and not any(f.startswith("docs/policies/") for f in clinic_files)
    assert "docs/services.csv" in clinic_files and "docs/catalogue.csv" not in clinic_files


def test_each_domain_keeps_its_own_guardrails(multi: Multi) -> None:
    question = "Can you write me a Python function to sort a list?"
    retail = ask(multi.url, "retail", question).json()
    clinic = ask(multi.url, "clinic", question).json()
    assert retail["kit"]["refused"] and clinic["kit"]["refused"]
    assert "Northwind" in retail["choices"][0]["message"]["content"]
    assert "Northwind" not in clinic["choices"][0]["message"]["content"]


def test_one_admission_queue_for_the_domains_on_one_model(multi: Multi) -> None:
    from kit.server.multi import turn_services
    from kit.server.settings import Limits

    turns = turn_services(multi.services, Limits(max_busy=2))
    assert len({id(t.admission) for t in turns}) == 1 and turns[0].admission.capacity == 2
    assert len({t.store.path for t in turns}) == 3  # a feedback store each


def test_each_ui_lives_at_its_name_with_its_branding_and_store(multi: Multi) -> None:
    from gradio_client import Client

    from kit.services.owner.feedback import FeedbackStore

    index = httpx.get(multi.url + "/", timeout=30).text
    assert 'href="/retail/"' in index and 'href="/clinic/"' in index and "Northwind Outfitters Help" in index
    page = httpx.get(multi.url + "/clinic/", timeout=30)
    assert page.status_code == 200 and "Northwind" not in page.text
    question = "What are your hours on Saturday?"
    job = Client(multi.url + "/clinic/", verbose=False).submit(question, api_name="/chat")
    list(job)
    sources = job.outputs()[-1][2]
    assert "docs/hours-and-location.md" in sources or "docs/faq.jsonl" in sources
    clinic, retail = (FeedbackStore.for_domain(s.domain.build_dir) for s in multi.services[1::-1])
    assert any(r["question"] == question for r in clinic.turns())
    assert not any(r["question"] == question for r in retail.turns())


def named_copy(tmp_path: Path, source: str, name: str) -> Path:
    dest = tmp_path / f"{source}-{name}"
    shutil.copytree(ROOT / "domains" / source, dest, ignore=shutil.ignore_patterns("build"))
    spec_file = dest / "domain.yaml"
    spec = yaml.safe_load(spec_file.read_text(encoding="utf-8"))
    spec_file.write_text(yaml.safe_dump({**spec, "name": name}, sort_keys=False), encoding="utf-8")
    return tune_domain(dest, gguf=TEST_MODEL)


def test_two_domains_with_one_name_or_a_server_path_are_refused_before_any_load(tmp_path: Path) -> None:
    from kit.domain import load_domain
    from kit.server.multi import check_names

    same = [load_domain(named_copy(tmp_path, source, "shop")) for source in ("retail", "clinic")]
    with pytest.raises(KitError, match="both named 'shop'"):
        check_names(same)
    with pytest.raises(KitError, match="name 'admin' is a path the server keeps"):
        check_names([load_domain(named_copy(tmp_path, "travel", "admin"))])


def test_one_gguf_loaded_two_ways_is_two_loads_and_a_warning_but_another_n_ctx_is_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from kit.components.model_pool import _warn_split_loads, load_key
    from kit.domain import load_domain

    retail = load_domain(tune_domain(named_copy(tmp_path, "retail", "shop"), n_ctx=2048))
    clinic = load_domain(tune_domain(named_copy(tmp_path, "clinic", "desk"), n_ctx=8192))
    travel = load_domain(tune_domain(named_copy(tmp_path, "travel", "trips"), n_threads=1))
    keys = [load_key(d.spec.model, d.root) for d in (retail, clinic, travel)]
    assert keys[0] == keys[1] != keys[2]
    with caplog.at_level("WARNING", logger="kit.components.model_pool"):
        _warn_split_loads([retail, clinic, travel], keys)
    assert (
        "gemma-3-270m-Q4_K_M.gguf loads more than once" in caplog.text
        and "trips (n_gpu_layers 0, n_threads 1)" in caplog.text
    )
