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


def test_every_dev_question_names_the_document_that_holds_its_evidence():
    topics = corpus.python_doc_topics()
    corpus.check_evidence(corpus.DEV_QUESTIONS, topics)
    assert all(item["topic"] in corpus.QUICK_TOPICS for item in corpus.DEV_QUESTIONS)
    assert corpus.contains_evidence("a  b\nc", "b c") and not corpus.contains_evidence("a b", "b c")


def test_a_missing_evidence_phrase_is_an_error_naming_phrase_and_document():
    topics = corpus.python_doc_topics(["pass", "del"])
    typo = [{"question": "What does pass do?", "evidence": "\"pass\" is a nul operation", "topic": "pass"}]
    with pytest.raises(corpus.EvidenceNotFound, match="is a nul operation' is not in the document 'pass'") as caught:
        corpus.check_evidence(typo, topics)
    assert caught.value.evidence == '"pass" is a nul operation' and caught.value.document == "the document 'pass'"
    elsewhere = [{"question": "What does pass do?", "evidence": "\"pass\" is a null operation", "topic": "try"}]
    with pytest.raises(corpus.EvidenceNotFound, match="'try' is left out"):
        corpus.check_evidence(elsewhere, topics)
    with pytest.raises(corpus.EvidenceNotFound, match="not in the documents 'del', 'pass'"):
        corpus.check_evidence([{"question": "?", "evidence": "no such words at all"}], topics)
    with pytest.raises(ValueError, match="empty evidence"):
        corpus.check_evidence([{"question": "?", "evidence": " "}], topics)
    passages = corpus.python_doc_passages(topics=["pass"])
    with pytest.raises(corpus.EvidenceNotFound, match="is not in the document 'pass'"):
        corpus.gold_ids(passages, "a phrase the documentation never uses")
    corpus.check_evidence([dict(typo[0], evidence="\"pass\" is a null  operation")], topics)  # whitespace-insensitive


def _heldout_items():
    """(question, evidence) pairs from the hidden tests of the RAG lab's source notebook."""
    import ast
    import json

    from conftest import ROOT

    source = ROOT / "autograder" / "source" / "phase1" / "03_rag_with_eval.ipynb"
    for cell in json.loads(source.read_text(encoding="utf-8"))["cells"]:
        if cell["metadata"].get("nbgrader", {}).get("grade_id") == "test_heldout":
            for node in ast.walk(ast.parse("".join(cell["source"]))):
                if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "HELDOUT":
                    return ast.literal_eval(node.value)
    raise AssertionError("the held-out set is missing from the hidden tests of 03_rag_with_eval")


def test_heldout_questions_and_evidence_appear_nowhere_a_learner_looks():
    """No held-out question, nor its gold evidence, in a student copy, a book page or the dev set."""
    import json

    from conftest import ROOT

    def words(text):
        return " ".join(corpus.tokenize(text))

    seen = {str(p.relative_to(ROOT)): words("\n".join("".join(c["source"]) for c in json.loads(p.read_text())["cells"]))
            for p in (ROOT / "notebooks").glob("phase*/*.ipynb")}
    seen.update({str(p.relative_to(ROOT)): words(p.read_text()) for p in (ROOT / "book").rglob("*.md")})
    seen["corpus.DEV_QUESTIONS"] = words(" ".join(q["question"] + " " + q["evidence"] for q in corpus.DEV_QUESTIONS))
    held = _heldout_items()
    assert len(held) >= 15
    leaks = []
    for question, evidence in held:
        for text in (question, evidence):
            tokens = words(text).split()
            # any five words in a row that carry at least three content words (not "to the end of the")
            windows = {" ".join(tokens[i:i + 5]) for i in range(len(tokens) - 4)
                       if sum(t not in corpus.STOPWORDS and len(t) > 2 for t in tokens[i:i + 5]) >= 3}
            leaks += [f"{where}: {text[:50]!r}" for where, body in seen.items() if any(w in body for w in windows)]
    assert not leaks, f"held-out items are visible to learners: {leaks[:5]}"
