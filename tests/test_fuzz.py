"""Property-based fuzzing (hypothesis) of every parser a user or a customer feeds, plus a bounded atheris run.

Run with `make test-reliability`. ``KIT_FUZZ_EXAMPLES`` sets hypothesis's inputs per test (default 200),
``KIT_FUZZ_SECONDS`` atheris's time per target (default 15). The targets and their contracts are in
tests/fuzz_targets.py; the figures measured are in docs/RELIABILITY.md.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import fuzz_targets as ft
import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.reliability

EXAMPLES = int(os.environ.get("KIT_FUZZ_EXAMPLES", "200"))
SECONDS = int(os.environ.get("KIT_FUZZ_SECONDS", "15"))
fuzz = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)

# Values of every JSON/YAML shape, including the awkward ones (NaN, huge ints, control characters).
scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
# Text users paste: line breaks of every kind, BOMs, NULs, right-to-left marks, emoji.
awkward = st.text(
    alphabet=st.characters(codec="utf-8") | st.sampled_from("\n\r\t\x00\ufeff\u2028\u2029\x85\u202e#-|,\"'{}[]:")
)


def mutate(doc: Any, data: st.DataObject, depth: int = 0) -> Any:
    """A copy of a parsed document with one place changed: a value replaced, a key dropped or added."""
    doc = copy.deepcopy(doc)
    if isinstance(doc, dict) and doc and depth < 4:
        key = data.draw(st.sampled_from(sorted(doc, key=str)))
        action = data.draw(st.sampled_from(["descend", "replace", "drop", "add"]))
        if action == "descend":
            doc[key] = mutate(doc[key], data, depth + 1)
        elif action == "replace":
            doc[key] = data.draw(values)
        elif action == "drop":
            del doc[key]
        else:
            doc[data.draw(st.text(max_size=12))] = data.draw(values)
        return doc
    if isinstance(doc, list) and doc and depth < 4:
        i = data.draw(st.integers(0, len(doc) - 1))
        doc[i] = mutate(doc[i], data, depth + 1) if data.draw(st.booleans()) else data.draw(values)
        return doc
    return data.draw(values)


SPEC = yaml.safe_load((ft.EXAMPLE / "domain.yaml").read_text(encoding="utf-8"))


@fuzz
@given(st.data())
def test_domain_yaml_mutated_from_a_valid_one(data: st.DataObject) -> None:
    ft.validate_file("spec", yaml.safe_dump(mutate(SPEC, data), allow_unicode=True).encode())


@fuzz
@given(awkward | st.binary().map(lambda b: b.decode("latin-1")))
@example("[" * 3000)  # found by fuzzing: deep nesting was a RecursionError traceback
@example("a: " + "{x: " * 3000)
@example("name: &a [1]\nx: *a\n? [1, 2]\n: 3\n")
@example("!!python/object/apply:os.system ['true']")
@example("\x1f")  # found by fuzzing: YAML's reader error spanned two lines
@example('"a\\nb": 1\n"\x1e": 2')  # found by fuzzing: a key with a line break split the problem line
def test_domain_yaml_any_text(text: str) -> None:
    ft.validate_file("spec", text.encode("utf-8", "surrogatepass"))


@fuzz
@given(st.binary())
def test_domain_yaml_any_bytes(data: bytes) -> None:
    ft.validate_file("spec", data)


def jsonl_lines(kind: str) -> list[Any]:
    return [json.loads(line) for line in (ft.EXAMPLE / ft.DATA_FILES[kind]).read_text().splitlines() if line.strip()]


@fuzz
@given(st.sampled_from(["train", "eval", "faq"]), st.data())
def test_jsonl_records_mutated_from_valid_ones(kind: str, data: st.DataObject) -> None:
    records = [mutate(r, data) if data.draw(st.booleans()) else r for r in jsonl_lines(kind)]
    ft.validate_file(kind, "\n".join(json.dumps(r, ensure_ascii=data.draw(st.booleans())) for r in records).encode())


@fuzz
@given(st.sampled_from(["train", "eval", "faq"]), st.lists(values.map(json.dumps) | awkward, max_size=6))
@example("train", ["[" * 5000])  # found by fuzzing: deep nesting was a RecursionError traceback
@example("train", ['{"messages": [{"role": "user", "content": "a\u2028b"}, {"role": "assistant", "content": "c"}]}'])
@example("train", ['{"function-": null}'])  # found by fuzzing: an IndexError traceback in `kit validate`
def test_jsonl_any_lines(kind: str, lines: list[str]) -> None:
    ft.validate_file(kind, "\n".join(lines).encode("utf-8", "surrogatepass"))


@fuzz
@given(st.sampled_from(["train", "eval", "faq", "table", "markdown"]), st.binary(max_size=2000))
def test_data_files_any_bytes(kind: str, data: bytes) -> None:
    ft.validate_file(kind, data)


cells = st.text(alphabet=st.characters(codec="utf-8") | st.sampled_from(',"\n\r '), max_size=12)


@fuzz
@given(st.lists(st.lists(cells, max_size=9), max_size=8), st.booleans())
def test_csv_tables(rows: list[list[str]], quoted: bool) -> None:
    import csv
    import io

    header = "sku,name,category,price,stock,specs,warranty"
    out = io.StringIO()
    csv.writer(out, quoting=csv.QUOTE_ALL if quoted else csv.QUOTE_MINIMAL).writerows(rows)
    table = (header + "\n" + out.getvalue()).encode("utf-8", "surrogatepass")
    ft.validate_file("table", table)
    ft.ingest(".csv", table)


markdown = st.lists(
    st.sampled_from(["# Title", "## Sub", "###### Deep ##", "```", "", "- item", "A sentence. Another one!"])
    | st.text(max_size=300)
    | st.integers(1, 3000).map(lambda n: "word " * n),
    max_size=12,
).map("\n".join)


@fuzz
@given(markdown, st.integers(1, 400), st.integers(0, 400))
def test_chunking_keeps_every_word_within_size(text: str, size: int, overlap: int) -> None:
    ft.chunking(text, size, overlap)


@fuzz
@given(st.sampled_from([".md", ".txt"]), markdown | awkward)
def test_markdown_and_text_ingestion(suffix: str, text: str) -> None:
    ft.ingest(suffix, text.encode("utf-8", "surrogatepass"))


tags = st.sampled_from(
    [
        "<html>",
        "<body>",
        "<main>",
        "</main>",
        "<p>",
        "</p>",
        "<h1>",
        "</h2>",
        "<li>",
        "<td>",
        "<script>",
        "</script>",
        "<title>",
        "</title>",
        "<!--",
        "-->",
        "<![CDATA[",
        "<br/>",
        "&amp;",
        "&#0;",
        "&#x110000;",
        "<svg>",
        "<h7>",
        "<pre>",
        "<table>",
    ]
)


@fuzz
@given(st.lists(tags | st.text(max_size=30), max_size=40).map("".join))
@example("<div>" * 3000 + "x")  # deep nesting
def test_html_ingestion(html: str) -> None:
    ft.ingest(".html", html.encode("utf-8", "surrogatepass"))


@fuzz
@given(st.lists(values.map(lambda v: json.dumps(v)) | awkward, max_size=6).map("\n".join))
def test_faq_ingestion(text: str) -> None:
    ft.ingest(".jsonl", text.encode("utf-8", "surrogatepass"))


def a_pdf() -> bytes:
    from pdfs import write_pdf

    path = ft.workspace() / "build" / "seed.pdf"
    path.parent.mkdir(exist_ok=True)
    return write_pdf(path, ["Our sourdough contains wheat and rye.", "Croissants contain butter."]).read_bytes()


@fuzz
@given(st.data())
def test_pdf_ingestion_of_damaged_files(data: st.DataObject) -> None:
    pdf = bytearray(a_pdf())
    for _ in range(data.draw(st.integers(0, 8))):  # flip, insert, delete or truncate
        at = data.draw(st.integers(0, len(pdf) - 1))
        action = data.draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        if action == "flip":
            pdf[at] = data.draw(st.integers(0, 255))
        elif action == "insert":
            pdf[at:at] = data.draw(st.binary(max_size=20) | st.sampled_from([b"obj", b"<<", b"/Length 99999", b"R "]))
        elif action == "delete":
            del pdf[at : at + data.draw(st.integers(1, 50))]
        elif len(pdf) > 1:
            del pdf[at:]
        if not pdf:
            pdf = bytearray(b"%")
    ft.ingest(".pdf", bytes(pdf))


@fuzz
@given(st.binary(max_size=3000))
def test_pdf_ingestion_any_bytes(data: bytes) -> None:
    ft.ingest(".pdf", b"%PDF-1.4\n" + data)


# Python's JSON reader (FastAPI's) accepts NaN and Infinity; test_faults.py has those (a 500 once).
json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
message = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant", "system", "developer", "tool"]) | st.text(max_size=8)},
    optional={
        "content": st.text(max_size=200)
        | st.none()
        | st.lists(
            st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url"]), "text": json_values}), max_size=3
        )
        | json_values,
        "name": json_values,
    },
)
request = st.fixed_dictionaries(
    {"messages": st.lists(message, max_size=5) | json_values},
    optional={
        "model": json_values,
        "stream": st.booleans() | json_values,
        "temperature": json_values,
        "n": json_values,
    },
)


@fuzz
@given(request)
@example({"messages": [{"role": "user", "content": "x" * 20000}]})  # longer than the context: a 400
@example({"messages": [{"role": "user", "content": [{"type": "text", "text": None}]}]})
@example({"messages": [{"role": "user", "content": "a\x00b"}], "stream": True})
def test_api_request_bodies(body: dict[str, Any]) -> None:
    ft.api_json(body)


@fuzz
@given(st.binary(max_size=500) | json_values.map(lambda v: json.dumps(v).encode()))
def test_api_raw_bodies_and_no_key(body: bytes) -> None:
    ft.api(body)
    assert ft.api(body, authorised=False) != 200


pii_text = st.lists(
    st.sampled_from(
        [
            "a.b+c@example.co.uk",
            "4111 1111 1111 1111",
            "+44 (20) 7946-0958",
            "2024-05-01",
            "£49.99",
            "@",
            "-",
            " ",
            ".",
            "12",
            "x",
        ]
    )
    | st.text(max_size=20),
    max_size=30,
).map("".join)


@fuzz
@given(pii_text)
def test_pii_masking_never_fails_and_leaves_no_email(text: str) -> None:
    ft.mask(text)


# Atheris: coverage-guided, bounded in time, each target in its own process (libFuzzer owns the process).
ATHERIS_TARGETS = ["spec", "jsonl", "csv", "ingest", "api", "mask"]


@pytest.mark.parametrize("target", ATHERIS_TARGETS)
def test_atheris(target: str, tmp_path: Path) -> None:
    pytest.importorskip("atheris")
    runner = Path(__file__).parent / "fuzz" / "atheris_run.py"
    cmd = [
        sys.executable,
        str(runner),
        target,
        f"-max_total_time={SECONDS}",
        "-rss_limit_mb=4096",
        "-timeout=20",
        f"-artifact_prefix={tmp_path}/",
        "-print_final_stats=1",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=SECONDS + 120, cwd=tmp_path)
    runs = re.search(r"stat::number_of_executed_units:\s*(\d+)", done.stderr)
    print(f"atheris {target}: {runs.group(1) if runs else '?'} inputs in {SECONDS} s")
    assert done.returncode == 0, done.stderr[-3000:]
