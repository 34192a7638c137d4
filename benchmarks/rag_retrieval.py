"""Retrieval quality of the phase-1 RAG pipeline on the held-out questions.

Runs the reference pipeline of lab 03 (BM25, dense in Qdrant's local mode, and hybrid by
reciprocal rank fusion) over the whole Python language reference and prints, per
configuration, hit rate@5 with its 95% Wilson interval, recall@5, MRR and nDCG@10 for
the hand-written development questions and for the held-out set, and which
configuration the lab's choosing rule picks on the development questions. (The lab's
development set also holds questions the chat model generates; they are left out here,
so the numbers do not depend on the chat model.)

    .venv/bin/python benchmarks/rag_retrieval.py [--quick]

The held-out questions and their gold passages are read from the hidden tests of the
instructor's source notebook; they are not in the student copy. --quick uses the lab's quick-mode corpus.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _reference import literal_from_cell, reference_functions  # noqa: E402

LAB = "03_rag_with_eval.ipynb"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the 33-topic corpus of quick mode")
    args = parser.parse_args()

    from rank_bm25 import BM25Okapi

    from labkit import corpus, describe_hardware, models, vectordb

    ref = reference_functions(LAB, {"retrieval_metrics", "ndcg_at_k", "reciprocal_rank_fusion", "choose_configuration"})
    heldout = literal_from_cell(LAB, "test_heldout", "HELDOUT")

    passages = corpus.python_doc_passages(topics=corpus.QUICK_TOPICS if args.quick else None)
    ids = [p["id"] for p in passages]
    texts = [p["text"] for p in passages]

    def lexical(text):
        return [w for w in corpus.tokenize(text) if w not in corpus.STOPWORDS]

    bm25 = BM25Okapi([lexical(t) for t in texts])
    embedder = models.load_embedding_model()
    start = time.perf_counter()
    vectors = models.encode(embedder, texts)
    store = vectordb.qdrant()
    vectordb.qdrant_index(store, "passages", vectors)
    print(f"{len(passages)} passages, embedded and indexed in {time.perf_counter() - start:.0f} s on {describe_hardware()}")

    def bm25_search(q, k):
        return [ids[i] for i in np.argsort(-bm25.get_scores(lexical(q)), kind="stable")[:k]]

    def dense_search(q, k):
        v = models.encode(embedder, [q])[0]
        return [ids[i] for i, _ in vectordb.qdrant_search(store, "passages", v, k)]

    def hybrid_search(q, k):
        return ref["reciprocal_rank_fusion"]([bm25_search(q, 50), dense_search(q, 50)])[:k]

    configurations = {"BM25": bm25_search, "dense": dense_search, "hybrid (RRF)": hybrid_search}  # simplest first
    sets = {
        "development (hand-written)": ([q["question"] for q in corpus.DEV_QUESTIONS],
                                       [q["evidence"] for q in corpus.DEV_QUESTIONS]),
        "held-out": ([q for q, _ in heldout], [e for _, e in heldout]),
    }
    for label, (questions, evidence) in sets.items():
        gold = [set(corpus.gold_ids(passages, e)) for e in evidence]
        n = len(questions)
        print(f"\n{label}: {n} questions")
        print(f"{'configuration':<14} {'hit rate@5 [95% Wilson]':>25} {'recall@5':>9} {'MRR':>6} {'nDCG@10':>8}")
        hits = {}
        for name, search in configurations.items():
            rankings = [search(q, 20) for q in questions]
            hit_rate = ref["hit_rate_at_k"](rankings, gold, 5)
            hits[name] = round(hit_rate * n)
            low, high = ref["wilson_interval"](hits[name], n)
            print(f"{name:<14} {hit_rate:>8.3f} [{low:.3f}, {high:.3f}] {ref['recall_at_k'](rankings, gold, 5):>9.3f} "
                  f"{ref['mrr'](rankings, gold):>6.3f} {ref['ndcg_at_k'](rankings, gold, 10):>8.3f}")
        if label.startswith("development"):  # the choice is made here; the held-out set only scores it
            print(f"the lab's rule (simplest whose interval overlaps the best's) picks: {ref['choose_configuration'](hits, n)}")
    store.close()


if __name__ == "__main__":
    main()
