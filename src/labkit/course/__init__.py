"""The course's own tooling: what maintainers, instructors and the ``labkit`` command use.

- ``cli``: the ``labkit`` command (prepare, hardware, run, plan, progress, grades).
- ``plan``: the ninety-day plan, its calendar and the weekly plans on the phase pages.
- ``progress``: runs a learner's labs and says which checks pass.
- ``labrun``: executes a notebook in a fresh kernel, timed, with its peak memory.
- ``nbmeta``: the one reader of nbgrader's cell metadata.
- ``grading``: the report on an nbgrader gradebook (CSV, HTML, figure, exit status).
- ``classgrade``: taking in an LMS download and grading a whole class, N learners at a time.
- ``sandbox``: the execute preprocessor that runs each submission in bubblewrap.
- ``shared_servers``: one model server per configuration for a whole grading run.
- ``reference_run``: CI's reference run of each lab, kept for the lab's page on the site.
- ``public_tree``: the learner-facing copy of the course, without answers or hidden tests.

No lab imports from here; labs use the runtime modules one level up (``labkit.models``,
``labkit.serving``...). ``tests/test_package_layout.py`` fails if a runtime module does.
"""
