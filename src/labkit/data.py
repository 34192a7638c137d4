"""Small real corpora that are available offline, and the eval sets built on them.

Nothing here is downloaded: the texts come from the Python standard library
(``http.HTTPStatus``, module docstrings), and the queries were written for the course.
"""
from __future__ import annotations

import hashlib
import http
import importlib
import inspect
import random

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
