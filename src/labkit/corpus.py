"""The course's offline corpora, and the pieces an eval set needs.

Nothing here is downloaded and nobody on the course wrote the texts:

- the Python language reference (``python_doc_topics``, ``python_doc_passages``), the RAG
  corpus of labs 02, 03 and 07;
- the standard library's docstrings (``stdlib_passages``, ``stdlib_docstrings``), the
  throughput and scale corpus of labs 01 and 02;
- ``http.HTTPStatus`` with incident descriptions written for the course
  (``http_status_corpus``, ``HTTP_STATUS_QUERIES``), the first search of lab 01.

The language reference is the Python language reference as CPython ships it for ``help()``:
``pydoc_data.topics`` holds 79 topics (``for``, ``try``, ``typesmapping``...), about 465k
characters. Nobody on the course wrote it, and nothing is downloaded. Its wording changes
between Python versions (3.12 and 3.13 reworded many topics), so the course ships one copy,
taken from CPython 3.11.7 (``data/pydoc_topics.json``, under the Python Software Foundation
License, source and notice inside), and every interpreter reads that copy.

An eval question names its gold passage by a short *evidence* string, a phrase copied
from the documentation, rather than by a passage number: passage numbers move when the
chunking or the Python version changes, the phrase does not. ``gold_ids`` turns the
phrase into the ids of the passages that contain it, and ``check_evidence`` checks a
question's phrase against its document; both raise ``EvidenceNotFound``, naming the phrase
and the document, when it is not there.
"""
from __future__ import annotations

import functools
import hashlib
import http
import importlib
import importlib.resources
import inspect
import json
import random
import re

# Topics every quick-mode run keeps: the ones the course's questions are about, plus
# neighbours on similar subjects so that retrieval still has to choose.
QUICK_TOPICS = (
    "assert", "assignment", "augassign", "break", "calls", "class", "comparisons",
    "context-managers", "continue", "del", "dict", "exceptions", "for", "formatstrings",
    "function", "global", "if", "import", "lambda", "nonlocal", "pass", "raise", "return",
    "slicings", "string-methods", "truth", "try", "typesmapping", "typesseq",
    "typesseq-mutable", "while", "with", "yield",
)


def python_doc_topics(names=None) -> dict[str, str]:
    """``{topic name: text}`` from the course's copy of ``pydoc_data.topics``, sorted by name.

    ``names`` keeps only those topics (a ``ValueError`` names any that do not exist).
    """
    topics = _shipped_topics()
    if names is not None:
        names = list(names)
        missing = sorted(set(names) - set(topics))
        if missing:
            raise ValueError(f"unknown pydoc topics: {missing}; see sorted(pydoc_data.topics.topics)")
        return {name: topics[name] for name in sorted(set(names))}
    return dict(sorted(topics.items()))


@functools.cache
def _shipped_topics() -> dict[str, str]:
    shipped = importlib.resources.files("labkit") / "data" / "pydoc_topics.json"
    return json.loads(shipped.read_text(encoding="utf-8"))["topics"]


def normalise(text: str) -> str:
    """Whitespace collapsed to single spaces, ends stripped: how passages and evidence compare."""
    return " ".join(text.split())


def paragraphs(text: str) -> list[str]:
    """The blank-line separated paragraphs of ``text``, whitespace normalised, empties dropped."""
    return [normalise(p) for p in re.split(r"\n\s*\n", text) if p.strip()]


def python_doc_passages(min_chars: int = 80, topics=None) -> list[dict]:
    """The topics cut into passages: one paragraph each, a short one merged into the next.

    Returns ``[{"id": "for/3", "topic": "for", "text": ...}, ...]`` in topic order. A
    paragraph under ``min_chars`` characters (a heading, a one-line grammar rule) is joined
    to the paragraph after it, so that no passage is a bare heading.
    """
    passages = []
    for name, text in python_doc_topics(topics).items():
        pending = ""
        count = 0
        for para in paragraphs(text):
            pending = f"{pending} {para}".strip()
            if len(pending) >= min_chars:
                passages.append({"id": f"{name}/{count}", "topic": name, "text": pending})
                count += 1
                pending = ""
        if pending:  # a short tail joins the topic's last passage
            if count:
                passages[-1]["text"] += " " + pending
            else:
                passages.append({"id": f"{name}/0", "topic": name, "text": pending})
    if not passages:
        raise ValueError("the corpus is empty: no passages were found in the chosen topics")
    return passages


class EvidenceNotFound(ValueError):
    """An evidence phrase that its document does not contain: the question cannot be scored.

    ``evidence`` is the phrase and ``document`` names where it was looked for (a topic, or
    the topics of the passages searched). A ``ValueError``, so callers that already catch
    bad input keep working.
    """

    def __init__(self, evidence: str, document: str, why: str = ""):
        self.evidence, self.document = evidence, document
        why = why or "this question has no gold passage (a typo, another Python version, or a topic left out)"
        super().__init__(f"the evidence {evidence[:80]!r} is not in {document}: {why}")


def _where(topics) -> str:
    names = sorted(set(topics))
    shown = ", ".join(repr(n) for n in names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
    return f"the document {shown}" if len(names) == 1 else f"the documents {shown}"


def contains_evidence(text: str, evidence: str) -> bool:
    """Whether ``text`` holds the whole ``evidence`` phrase, whitespace-insensitively."""
    return normalise(evidence) in normalise(text)


def check_evidence(questions, topics: dict[str, str]) -> None:
    """Raise ``EvidenceNotFound`` for the first question whose phrase its document lacks.

    ``topics`` is ``{name: text}`` as from ``python_doc_topics``. A question with a
    ``"topic"`` must find its phrase in that topic (and the topic must be among ``topics``);
    one without must find it in some topic. Run it before scoring anything that matches
    phrases by substring, so a phrase that is nowhere is an error, never a silent miss.
    """
    for item in questions:
        evidence = normalise(item.get("evidence", ""))
        if not evidence:
            raise ValueError(f"empty evidence for {item.get('question', item)!r}: a question needs a phrase "
                             "from its gold passage")
        topic = item.get("topic")
        if topic is not None:
            if topic not in topics:
                raise EvidenceNotFound(evidence, _where(topics), f"its document {topic!r} is left out of the "
                                       "corpus, so this question has no gold passage")
            if not contains_evidence(topics[topic], evidence):
                raise EvidenceNotFound(evidence, _where([topic]))
        elif not any(contains_evidence(text, evidence) for text in topics.values()):
            raise EvidenceNotFound(evidence, _where(topics))


def gold_ids(passages, evidence: str) -> list[str]:
    """Ids of the passages whose text contains ``evidence`` (whitespace-insensitive).

    Raises ``EvidenceNotFound`` (a ``ValueError``) naming the phrase and the documents
    searched when none does: a question without a gold passage cannot be scored.
    """
    if not passages:
        raise ValueError("the corpus is empty: there is nothing to find gold passages in")
    needle = normalise(evidence)
    if not needle:
        raise ValueError("empty evidence: a question needs a phrase from its gold passage")
    found = [p["id"] for p in passages if needle in normalise(p["text"])]
    if not found:
        raise EvidenceNotFound(needle, _where(p.get("topic", "?") for p in passages))
    return found


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens for lexical search: ``re.findall(r"\\w+")`` on the text."""
    return re.findall(r"\w+", text.lower())


# English function words, left out when comparing the content of two texts.
STOPWORDS = frozenset("""
a about above after again against all also an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from further
had has have having he her here hers him his how i if in into is it its itself just me more
most my no nor not now of off on once only or other our out over own same she should so some
such than that the their theirs them then there these they this those through to too under
until up very was we were what when where which while who whom why will with would you your
""".split())


# Questions written for the course, each with a phrase from its gold passage and the topic
# (document) that holds it. They are the hand-written part of the development set of the
# RAG lab, and the chunking eval of the vector-search lab. The held-out questions live in
# the RAG lab's hidden tests, not here.
DEV_QUESTIONS: list[dict] = [
    {"question": "What happens to an assert statement when Python runs with optimization turned on?",
     "evidence": "when optimization is requested at compile time", "topic": "assert"},
    {"question": "Does a finally clause run when the try block returns?",
     "evidence": "the \"finally\" clause is also executed", "topic": "try"},
    {"question": "How do I loop over a list and also get the index of each item?",
     "evidence": "enumerate", "topic": "typesseq"},
    {"question": "Which methods must an object define to be used in a with statement?",
     "evidence": "\"__enter__()\" method is invoked", "topic": "with"},
    {"question": "What does the else clause of a for loop do?",
     "evidence": "the suite in the \"else\" clause, if present, is executed, and the loop terminates", "topic": "for"},
    {"question": "How can a function change a variable defined at module level?",
     "evidence": "It would be impossible to assign to a global variable without \"global\"", "topic": "global"},
    {"question": "What is the difference between nonlocal and global?",
     "evidence": "The \"nonlocal\" statement causes the listed identifiers to refer to", "topic": "nonlocal"},
    {"question": "Which values count as false in an if statement?",
     "evidence": "zero of any numeric type", "topic": "truth"},
    {"question": "Why should I not use a mutable list as a default argument value?",
     "evidence": "Default parameter values are evaluated from left to right when the function definition is executed", "topic": "function"},
    {"question": "How do I re-raise an exception with a different exception as its cause?",
     "evidence": "The \"from\" clause is used for exception chaining", "topic": "raise"},
    {"question": "What does dict.get return when the key is missing?",
     "evidence": "so that this method never raises a \"KeyError\"", "topic": "typesmapping"},
    {"question": "How do I remove whitespace from both ends of a string?",
     "evidence": "Return a copy of the string with the leading and trailing characters removed", "topic": "string-methods"},
    {"question": "How do I format a number with a thousands separator in an f-string?",
     "evidence": "option signals the use of a comma for a thousands separator", "topic": "formatstrings"},
    {"question": "Can a lambda expression contain statements?",
     "evidence": "functions created with lambda expressions cannot contain statements or annotations", "topic": "lambda"},
    {"question": "What does a slice with a negative step do?",
     "evidence": "If *i* or *j* are omitted or \"None\", they become", "topic": "typesseq"},
    {"question": "How do I sort a list in place in descending order?",
     "evidence": "*reverse* is a boolean value", "topic": "typesseq"},
    {"question": "When is the else clause of a try statement executed?",
     "evidence": "The optional \"else\" clause is executed if the control flow leaves the \"try\" suite", "topic": "try"},
    {"question": "How does Python compare two tuples?",
     "evidence": "Sequences compare lexicographically using comparison of corresponding elements", "topic": "comparisons"},
    {"question": "What does the yield expression do inside a function?",
     "evidence": "Using yield in a function definition is sufficient to cause that definition to create a generator", "topic": "yield"},
    {"question": "What does the pass statement do?",
     "evidence": "\"pass\" is a null operation", "topic": "pass"},
    {"question": "What does the del statement do to a name?",
     "evidence": "Deletion of a name removes the binding of that name", "topic": "del"},
    {"question": "How does import find a module the first time it is imported?",
     "evidence": "find a module, loading and initializing it if necessary", "topic": "import"},
    {"question": "How can I merge two dictionaries into a new one?",
     "evidence": "Create a new dictionary with the merged keys and values", "topic": "typesmapping"},
    {"question": "Is the order of keys in a dictionary preserved?",
     "evidence": "Dictionaries preserve insertion order", "topic": "typesmapping"},
]


# ----------------------------------------------------------- the standard library as a corpus

# Descriptions of real incidents, in the words an on-call engineer might type, each
# paired with the status code a good search should surface. Written for the course.
HTTP_STATUS_QUERIES: list[tuple[str, int]] = [
    ("the client is sending far too many requests and should back off", 429),
    ("we moved this endpoint to a new URL for good", 301),
    ("the page lives somewhere else for now but will come back", 307),
    ("no resource exists at that path", 404),
    ("the cached copy is still fresh, nothing changed since last fetch", 304),
    ("the upstream service sent garbage back to the proxy", 502),
    ("the load balancer waited too long for the app server to answer", 504),
    ("the server is overloaded and cannot take the request right now", 503),
    ("an unhandled exception crashed the request handler", 500),
    ("the user must log in before calling this API", 401),
    ("the user is logged in but is not allowed to see this", 403),
    ("POST is not supported on this route, only GET", 405),
    ("the JSON body is malformed and cannot be parsed", 400),
    ("the uploaded file is bigger than the limit", 413),
    ("the client sent XML but the API only accepts JSON", 415),
    ("two writers edited the same record and the second update clashes", 409),
    ("the record was deleted on purpose and will never return", 410),
    ("the job was queued and will be processed later in the background", 202),
    ("a new user account was created successfully", 201),
    ("the delete worked and there is no body to send back", 204),
    ("the client asked for a byte range of a large download", 206),
    ("the request took so long that the server gave up waiting for it", 408),
    ("the request headers such as cookies are too large", 431),
    ("the If-Match header did not match the current version", 412),
    ("content blocked in this country because of a court order", 451),
    ("the disk is full so the server cannot store the upload", 507),
    ("the endpoint is planned but the server has no code for it yet", 501),
    ("the hotel wifi asks you to sign in before you can browse", 511),
]


def http_status_corpus() -> list[dict]:
    """One short document per HTTP status code: ``{"id": code, "text": ...}``."""
    docs = []
    for status in http.HTTPStatus:
        text = f"{status.value} {status.phrase}"
        if status.description:
            text += f". {status.description}"
        docs.append({"id": status.value, "text": text})
    return docs


# Modules whose documentation makes a varied, realistic set of passages to encode.
_DOC_MODULES = [
    "asyncio", "collections", "concurrent.futures", "contextlib", "csv", "datetime",
    "decimal", "email", "functools", "hashlib", "heapq", "http.client", "http.server",
    "itertools", "json", "logging", "os", "pathlib", "queue", "random", "re", "shutil",
    "socket", "sqlite3", "ssl", "statistics", "string", "subprocess", "tempfile",
    "textwrap", "threading", "time", "urllib.parse", "uuid", "zipfile",
]


def _collect_paragraphs(objects, min_chars: int, found: dict) -> None:
    """Add each docstring paragraph of ``objects`` with ``min_chars`` or more to ``found``.

    ``found`` is used as an ordered set: a paragraph seen before keeps its first place.
    """
    for obj in objects:
        try:
            doc = inspect.getdoc(obj) or ""
        except Exception:  # an object whose __doc__ lookup fails
            continue
        for para in doc.split("\n\n"):
            para = " ".join(para.split())
            if len(para) >= min_chars:
                found.setdefault(para)


def stdlib_passages(n: int, seed: int = 0, min_chars: int = 40) -> list[str]:
    """``n`` paragraphs from standard-library docstrings, sampled reproducibly."""
    found: dict[str, None] = {}
    for name in _DOC_MODULES:
        module = importlib.import_module(name)
        _collect_paragraphs([module] + [obj for _, obj in inspect.getmembers(module)], min_chars, found)
    paragraphs = list(found)
    if n > len(paragraphs):
        raise ValueError(f"asked for {n} passages but the standard library gives {len(paragraphs)}")
    return random.Random(seed).sample(paragraphs, n)


# Standard-library modules left out of ``stdlib_docstrings``: they open windows, print on
# import, start programs, or exist only for the interpreter's own tests.
_SKIP_MODULES = {
    "antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "test", "lib2to3",
    "ensurepip", "venv", "pydoc", "xxsubtype", "xxlimited", "xxlimited_35", "msilib", "winreg",
    "winsound", "msvcrt", "nt", "_winapi", "sre_compile", "sre_parse", "sre_constants", "asynchat",
    "asyncore", "smtpd", "imp", "distutils", "crypt", "nis", "spwd", "ossaudiodev", "readline",
}


def stdlib_docstrings(min_chars: int = 40) -> list[str]:
    """Every distinct docstring paragraph of ``min_chars`` or more from the standard library.

    Walks the top-level modules in ``sys.stdlib_module_names`` (minus a few that misbehave
    on import) and their members; about 7,700 paragraphs, shuffled by a hash of their
    text, so that a prefix is a fair sample and stays stable when a Python release adds some. A larger
    real corpus than ``stdlib_passages`` (classes include their methods), for indexes of
    tens of thousands of vectors.
    """
    import contextlib
    import io
    import sys
    import warnings

    found: dict[str, None] = {}
    for name in sorted(sys.stdlib_module_names):
        if name.startswith("_") or name in _SKIP_MODULES:
            continue
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                module = importlib.import_module(name)
                members = inspect.getmembers(module)
        except Exception:  # a module this platform lacks
            continue
        objects = [module]
        for _, obj in members:
            if inspect.ismodule(obj):  # a submodule is there only if something imported it
                continue
            objects.append(obj)
            if inspect.isclass(obj) and getattr(obj, "__module__", None) == module.__name__:
                objects.extend(member for _, member in inspect.getmembers(obj))  # its methods
        _collect_paragraphs(objects, min_chars, found)
    return sorted(found, key=lambda p: hashlib.sha1(p.encode()).hexdigest())
