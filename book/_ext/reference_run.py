"""Each lab's page ends with "The reference run": the numbers and figures of CI's run of the lab's
reference solution, read at build time from what tests/test_autograder.py saved (never pasted by
hand, never code). What each page shows is declared in ``labkit.course.reference_run.PAGES``.

The runs are read from ``LABKIT_REFERENCE_RUN`` (default ``_build/reference-run``). With
``LABKIT_REFERENCE_RUN_REQUIRED=1`` a lab without a complete run stops the build with a message
that names the lab and the command that makes its run; without it (a fresh clone) such a page
says that the published site shows the reference run there.
"""
from __future__ import annotations

import hashlib
import json
import os
import re

from sphinx.errors import SphinxError
from sphinx.util import logging

from labkit.course import reference_run

logger = logging.getLogger(__name__)
LAB_PAGE = re.compile(r"notebooks/phase\d+/(\d\d_\w+)")


class ReferenceRunMissing(SphinxError):
    category = "Reference run missing"


def _lab(docname: str) -> str | None:
    found = LAB_PAGE.fullmatch(docname)
    return found.group(1) if found else None


def _state(app, stem: str) -> str:
    """A fingerprint of what the page of lab ``stem`` is built from, so that a new run re-reads it."""
    digest = hashlib.sha256(f"{reference_run.required()}".encode())
    lab_folder = reference_run.folder(app.srcdir) / stem
    if lab_folder.is_dir():
        for path in sorted(lab_folder.iterdir()):
            digest.update(path.name.encode())
            digest.update(path.read_bytes() if path.is_file() else b"")
    return digest.hexdigest()


def check_every_lab(app):
    """With the reference run required, name every lab whose run is missing before reading any page."""
    if not reference_run.required():
        return
    problems = []
    for stem in reference_run.PAGES:
        try:
            reference_run.load(stem, app.srcdir)
        except reference_run.ReferenceRunError as error:
            problems.append(f"- lab {stem}: {error.reason}")
    if problems:
        raise ReferenceRunMissing(f"{reference_run.REQUIRED_ENV} is set and these labs' pages cannot show their "
                                  "reference run:\n" + "\n".join(problems) + "\nTo make them, "
                                  f"{reference_run.how_to_make()}. A build without {reference_run.REQUIRED_ENV} "
                                  "shows a placeholder instead.")


def section_for(app, docname: str, stem: str) -> str:
    if stem not in reference_run.PAGES:
        if reference_run.required():
            raise ReferenceRunMissing(f"{docname} is a lab page without an entry in "
                                      "labkit.course.reference_run.PAGES: declare what its page shows")
        return reference_run.placeholder()
    try:
        reference = reference_run.load(stem, app.srcdir)
    except reference_run.ReferenceRunError as error:
        if reference_run.required():
            raise ReferenceRunMissing(str(error)) from None
        logger.info(f"{docname}: placeholder instead of the reference run ({error})")
        return reference_run.placeholder()
    page_folder = os.path.dirname(app.env.doc2path(docname))
    links = [os.path.relpath(path, page_folder).replace(os.sep, "/") for path, _ in reference.figures]
    return reference_run.render(reference, links)


def add_section(app, docname, source):
    stem = _lab(docname)
    if stem is None:
        return
    section = section_for(app, docname, stem)
    if str(app.env.doc2path(docname)).endswith(".ipynb"):  # one more markdown cell, which myst-nb parses
        notebook = json.loads(source[0])
        notebook["cells"].append({"cell_type": "markdown", "id": "the-reference-run", "metadata": {}, "source": section})
        source[0] = json.dumps(notebook, ensure_ascii=False)
    else:  # a lab page written as MyST Markdown
        source[0] = source[0].rstrip("\n") + "\n\n" + section
    app.env.reference_run_state = getattr(app.env, "reference_run_state", {})
    app.env.reference_run_state[docname] = _state(app, stem)


def outdated_lab_pages(app, env, added, changed, removed):
    """Lab pages whose reference run changed since they were last read (an incremental build re-reads them)."""
    seen = getattr(env, "reference_run_state", {})
    return [docname for docname, state in seen.items()
            if docname in env.found_docs and _lab(docname) and state != _state(app, _lab(docname))]


def forget(app, env, docname):
    getattr(env, "reference_run_state", {}).pop(docname, None)


def merge(app, env, docnames, other):
    env.reference_run_state = getattr(env, "reference_run_state", {})
    env.reference_run_state.update({d: s for d, s in getattr(other, "reference_run_state", {}).items() if d in docnames})


def setup(app):
    app.connect("builder-inited", check_every_lab)
    app.connect("source-read", add_section)
    app.connect("env-get-outdated", outdated_lab_pages)
    app.connect("env-purge-doc", forget)
    app.connect("env-merge-info", merge)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "env_version": 1}
