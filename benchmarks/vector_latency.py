"""Retrieval latency at 10,000 chunks: the embedded store against PostgreSQL with pgvector.

Indexes 10,000 real chunks (the paragraphs of the Python language reference, then
standard-library docstrings, then the merged passages of lab 03; all-MiniLM-L6-v2 vectors, 384 dimensions, cached on disk)
and times top-10 queries in Qdrant's local mode (exact), in pgvector without an index
(exact scan) and with an HNSW index (m=16, ef_construction=64, ef_search=40), printing
p50/p95 latency and the HNSW's recall@10 against exact search.

    .venv/bin/python benchmarks/vector_latency.py [--chunks 10000] [--queries 200]

PostgreSQL is the throwaway server of labkit.vectordb.postgres(), or LABKIT_DATABASE_URL.
The first run embeds any chunk not in the cache (minutes on a laptop CPU).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _reference import reference_functions  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()

    from labkit import bench, corpus, describe_hardware, models, vectordb

    ref = reference_functions("02_vector_search.ipynb", {"pgvector_top_k", "ann_recall"})
    paragraphs = [p for t in corpus.python_doc_topics().values() for p in corpus.paragraphs(t)]
    passages = [p["text"] for p in corpus.python_doc_passages()]
    pool = list(dict.fromkeys(paragraphs + corpus.stdlib_docstrings() + passages))  # distinct, first place kept
    if len(pool) < args.chunks + args.queries:
        raise SystemExit(f"only {len(pool)} texts available for {args.chunks} chunks and {args.queries} queries")
    embedder = models.load_embedding_model()
    start = time.perf_counter()
    vectors = vectordb.normalise_rows(models.encode(embedder, pool[:args.chunks]))
    queries = vectordb.normalise_rows(models.encode(embedder, [" ".join(t.split()[:12]) for t in pool[-args.queries:]]))
    print(f"{len(vectors):,} chunks, {len(queries)} queries, embedded in {time.perf_counter() - start:.0f} s; {describe_hardware()}")
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :10].tolist()

    def timed(search):
        latencies, found = [], []
        for q in queries:
            t0 = time.perf_counter()
            found.append(search(q))
            latencies.append(time.perf_counter() - t0)
        summary = bench.latency_summary(latencies)
        return summary, ref["ann_recall"](found, exact, 10)

    rows = []
    store = vectordb.qdrant()
    vectordb.qdrant_index(store, "chunks", vectors)
    rows.append(("Qdrant local mode (exact)", *timed(lambda q: [i for i, _ in vectordb.qdrant_search(store, "chunks", q, 10)])))
    store.close()
    try:
        with vectordb.postgres() as pg:
            vectordb.pg_load(pg, "chunks", vectors)
            pg.conn.execute("ANALYZE chunks")
            rows.append(("pgvector, no index (exact)", *timed(lambda q: ref["pgvector_top_k"](pg.conn, "chunks", q, 10))))
            t0 = time.perf_counter()
            vectordb.pg_hnsw_index(pg, "chunks")
            build = time.perf_counter() - t0
            pg.conn.execute("SET enable_seqscan = off")
            rows.append((f"pgvector HNSW (built in {build:.1f} s)", *timed(lambda q: ref["pgvector_top_k"](pg.conn, "chunks", q, 10))))
    except vectordb.DatabaseError as error:
        print("PostgreSQL skipped:", error)
    print(f"\n{'store':<34} {'p50 ms':>7} {'p95 ms':>7} {'recall@10':>10}")
    for name, summary, recall in rows:
        print(f"{name:<34} {summary['p50_ms']:>7.2f} {summary['p95_ms']:>7.2f} {recall:>10.3f}")


if __name__ == "__main__":
    main()
