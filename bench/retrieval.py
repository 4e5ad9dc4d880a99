"""Retrieval speed, as ratios against baselines measured in the same run.

    .venv/bin/python bench/retrieval.py [--rows 10000] [--queries 200]

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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()

    from kit.components.embedding import Embedder, model_location
    from kit.domain import load_domain
    from kit.records import EvalItem
    from kit.services.ingest import collect, index_domain
    from kit.services.retrieve import Retriever
    from kit.settings import EMBEDDED

    work = Path(tempfile.mkdtemp(prefix="kit-bench-"))
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
