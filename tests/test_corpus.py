"""labkit.corpus: the Python documentation corpus, its passages, and gold lookups."""
from __future__ import annotations

import pytest

from labkit import corpus


def test_topics_are_the_real_documentation():
    topics = corpus.python_doc_topics()
    assert len(topics) >= 70 and "for" in topics and "try" in topics
    assert sum(len(t) for t in topics.values()) > 300_000
    assert list(corpus.python_doc_topics(["try", "for"])) == ["for", "try"]
    with pytest.raises(ValueError, match="unknown pydoc topics"):
        corpus.python_doc_topics(["no-such-topic"])


def test_passages_have_stable_ids_and_no_bare_headings():
    passages = corpus.python_doc_passages()
    ids = [p["id"] for p in passages]
    assert len(ids) == len(set(ids)) > 1000
    short = [p for p in passages if len(p["text"]) < 80]
    assert len(short) <= len(corpus.python_doc_topics()), "only a topic's lone tail may be short"
    assert passages == corpus.python_doc_passages(), "deterministic"
    quick = corpus.python_doc_passages(topics=corpus.QUICK_TOPICS)
    assert {p["topic"] for p in quick} == set(corpus.QUICK_TOPICS)


def test_every_dev_question_has_a_gold_passage_in_the_quick_corpus():
    quick = corpus.python_doc_passages(topics=corpus.QUICK_TOPICS)
    assert len(corpus.DEV_QUESTIONS) >= 20
    for item in corpus.DEV_QUESTIONS:
        assert item["question"].endswith("?")
        assert corpus.gold_ids(quick, item["evidence"])


def test_bad_input_gives_clear_errors():
    passages = corpus.python_doc_passages(topics=["pass"])
    with pytest.raises(ValueError, match="no gold passage"):
        corpus.gold_ids(passages, "a phrase the documentation never uses")
    with pytest.raises(ValueError, match="empty"):
        corpus.gold_ids([], "anything")
    with pytest.raises(ValueError, match="empty evidence"):
        corpus.gold_ids(passages, "   ")
    with pytest.raises(ValueError, match="empty"):
        corpus.python_doc_passages(topics=[])


def test_tokenize_and_normalise():
    assert corpus.tokenize("The __init__ method, x+=1!") == ["the", "__init__", "method", "x", "1"]
    assert corpus.normalise("  a\n\n b\tc ") == "a b c"
    assert "the" in corpus.STOPWORDS and "python" not in corpus.STOPWORDS
