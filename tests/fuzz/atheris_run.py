"""Coverage-guided fuzzing of one kit parser with atheris (libFuzzer), seeded from the example domain.

    python tests/fuzz/atheris_run.py TARGET [libFuzzer flags]    # e.g. spec -max_total_time=60

TARGET is one of: spec, jsonl, csv, ingest, api, mask (see tests/fuzz_targets.py for each contract).
A crash (any exception but the clear, expected ones) is saved as ``crash-*`` and the run exits non-zero.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

with atheris.instrument_imports(include=["kit", "yaml", "pypdf", "bs4"]):
    import bs4  # noqa: F401  (instrumented for coverage)
    import fuzz_targets as ft
    import pypdf  # noqa: F401
    import yaml  # noqa: F401

    import kit.domain
    import kit.server.routes
    import kit.services.retrieval.chunking
    import kit.services.retrieval.loaders
    import kit.services.safety.guardrails
    import kit.validation.checks  # noqa: F401

JSONL_KINDS = ("train", "eval", "faq")


def spec(data: bytes) -> None:
    ft.validate_file("spec", data)


def jsonl(data: bytes) -> None:
    if data:
        ft.validate_file(JSONL_KINDS[data[0] % len(JSONL_KINDS)], data[1:])


def csv(data: bytes) -> None:
    ft.validate_file("table", data)
    ft.ingest(".csv", data)


def ingest(data: bytes) -> None:
    if data:
        ft.ingest(ft.INGEST_SUFFIXES[data[0] % len(ft.INGEST_SUFFIXES)], data[1:])


def api(data: bytes) -> None:
    ft.api(data)


def mask(data: bytes) -> None:
    ft.mask(data.decode("utf-8", "replace"))


TARGETS: dict[str, Callable[[bytes], None]] = {f.__name__: f for f in (spec, jsonl, csv, ingest, api, mask)}
SEEDS = {
    "spec": ["domain.yaml"],
    "jsonl": ["data/train.jsonl", "eval/eval.jsonl", "docs/faq.jsonl"],
    "csv": ["docs/catalogue.csv"],
    "ingest": ["docs/policies.md", "docs/catalogue.csv", "docs/faq.jsonl"],
    "api": [],
    "mask": [],
}


def seed_corpus(target: str) -> Path:
    """A corpus folder holding the example domain's own files (with the selector byte where one is read)."""
    corpus = Path.cwd() / f"corpus-{target}"
    corpus.mkdir(exist_ok=True)
    for i, rel in enumerate(SEEDS[target]):
        data = (ft.EXAMPLE / rel).read_bytes()
        if target == "jsonl":
            data = bytes([JSONL_KINDS.index({"data": "train", "eval": "eval"}.get(rel.split("/")[0], "faq"))]) + data
        if target == "ingest":
            data = bytes([ft.INGEST_SUFFIXES.index(Path(rel).suffix)]) + data
        (corpus / f"seed-{i}").write_bytes(data)
    if target == "api":
        (corpus / "seed-0").write_bytes(
            b'{"model": "x", "messages": [{"role": "user", "content": "Can I return it?"}]}'
        )
    if target == "mask":
        (corpus / "seed-0").write_bytes(
            b"Call +1 555 0100 or mail a.b@example.com; card 4111 1111 1111 1111 on 2024-05-01"
        )
    return corpus


def main() -> None:
    target = sys.argv[1]
    fn = TARGETS[target]
    argv = [sys.argv[0], *sys.argv[2:], str(seed_corpus(target))]
    atheris.Setup(argv, fn)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
