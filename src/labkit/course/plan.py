"""The ninety-day plan as data, and a learner's personal schedule built from it.

Everything that names a phase, a week's target or a milestone lives here, so the
``labkit plan`` command, the book and any figure of the plan cannot drift apart: they
all read ``PHASES``, ``TRACKS``, ``weekly_targets(track)`` and ``milestones(track)``.

Days are counted from 1 (the start date) to 90. Week ``n`` covers days ``7n-6`` to
``7n``, so week 13 is the six days 85-90, and weeks 5 and 9 straddle two phases.
"""
from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

DAYS = 90
HOURS_PER_WEEK = 20  # what the plan is sized for: about half-time
MARKDOWN_NAME = "ninety-day-plan.md"
ICS_NAME = "ninety-day-plan.ics"


@dataclass(frozen=True)
class Phase:
    number: int
    name: str
    first_day: int
    last_day: int
    focus: str
    deliverable: str  # what exists on the last day


@dataclass(frozen=True)
class Track:
    name: str  # what ``--track`` takes
    title: str
    summary: str
    deliverable: str  # the day-60 project for this track
    lab: str | None  # the course lab the track starts from, where there is one


@dataclass(frozen=True)
class WeekTarget:
    week: int
    first_day: int
    last_day: int
    phases: tuple[str, ...]  # every phase the week overlaps, in order
    title: str  # short: a calendar entry's summary
    detail: str  # what "done" means for the week
    lab: str | None = None


@dataclass(frozen=True)
class Milestone:
    day: int
    phase: str
    title: str
    deliverable: str


PHASES = (
    Phase(1, "Foundation", 1, 30, "embeddings, vector search, a RAG pipeline with an eval",
          "a local RAG pipeline with a vector store, an embedding pipeline and an eval"),
    Phase(2, "Build", 31, 60, "one track: model serving, LoRA fine-tuning or agents",
          "one measured project for your track, deployed and written up"),
    Phase(3, "Position", 61, 90, "shipping, writing, open source, applications",
          "the shipped artefact, one accepted open-source contribution, a refreshed resume and GitHub, "
          "30-50 targeted applications"),
)

TRACKS = {
    "infra": Track(
        "infra", "Infrastructure: serve a model and measure it",
        "serve an open-weight model with vLLM; measure latency, throughput and cost per million tokens",
        "a vLLM deployment of an open-weight model with its latency, throughput and cost per million "
        "tokens measured, deployed and written up",
        "04_serve_with_vllm"),
    "applied": Track(
        "applied", "Applied ML: fine-tune with LoRA and prove it",
        "fine-tune a small open-weight model with LoRA and prove the gain on held-out data",
        "a LoRA fine-tune that beats the base model on held-out data, deployed and written up",
        "05_lora_finetune"),
    "agents": Track(
        "agents", "Agents: build an agent and test it",
        "build a tool-using agent for one narrow task and measure its accuracy on a held-out test set",
        "an agent whose accuracy is measured on a held-out test set, deployed and written up",
        "06_agent_with_eval"),
}

# (title, detail, lab) for each week; weeks 5-8 come from _TRACK_WEEKS.
_SHARED_WEEKS = {
    1: ("Embeddings: text as vectors",
        "Set up the course environment and work lab 01_embeddings until every check passes: cosine "
        "similarity, top-k search, recall@k on a known-item eval, encoding throughput by batch size. "
        "Skim the two cookbooks and read the first examples closely; build a first agent in LangChain.",
        "01_embeddings"),
    2: ("Vector search",
        "Work lab 02_vector_search: put the vectors in a vector store, compare exact and "
        "approximate search on recall and latency, pick settings from the numbers. A first agent in "
        "LlamaIndex by day 10; Huyen's chapters on deployment and monitoring; choose the document "
        "collection for your own pipeline (runbooks, API docs, postmortems).", "02_vector_search"),
    3: ("RAG pipeline end to end",
        "Start lab 03_rag_with_eval: chunk documents, embed, retrieve and answer with the local "
        "chat model; the whole pipeline runs on your machine. Your own embedding pipeline and vector "
        "store running; 30-50 evaluation questions written with their relevant passages; Eugene Yan's "
        "writing on evaluation read.", "03_rag_with_eval"),
    4: ("Eval for the RAG pipeline",
        "Finish lab 03_rag_with_eval: an eval set of questions with known passages, a retrieval "
        "score with its settings written down, one change (chunk size, k) and how the score moved. "
        "Your own pipeline end to end with its retrieval score and at least two changes measured "
        "against it; the deep dive for your target role started.",
        "03_rag_with_eval"),
    9: ("Ship the Build project; refresh resume and GitHub",
        "By day 60: the track project deployed where others can reach it, with a write-up argued "
        "from its measurements. Days 61-63: put it at the top of your resume and GitHub profile, "
        "choose the open-source project to contribute to, send the first 5-10 targeted applications.",
        None),
    10: ("Monitoring; pick the open-source contribution",
         "Run the project like a backend service: latency, error rate, throughput and the track's "
         "own numbers on a dashboard, alerts written down. Pick a non-cosmetic issue in an "
         "open-source AI project and start on it. 5-10 targeted applications.", None),
    11: ("Write-up from measurements; open the pull request",
         "Two or three short pieces on the design choices, each resting on numbers you measured. "
         "Open the open-source pull request. 5-10 targeted applications.", None),
    12: ("Review rounds; keep applying",
         "Answer review on the pull request until it can be merged. Follow up on applications, "
         "prepare for interviews with the project's numbers. 5-10 targeted applications.", None),
    13: ("Day 90: shipped, accepted, applied",
         "Contribution accepted, artefact shipped with monitoring, resume and GitHub lead with the "
         "project, 30-50 targeted applications sent. Tick the day-90 checklist.", None),
}

_TRACK_WEEKS = {
    "infra": {
        5: ("Serve a model with vLLM",
            "Work lab 04_serve_with_vllm: serve an open-weight model behind vLLM's OpenAI-compatible "
            "API, write the success criteria as numbers (a p95 latency target, a cost ceiling).",
            "04_serve_with_vllm"),
        6: ("Load test: latency and throughput",
            "Time to first token, tokens per second and p95 latency as concurrency rises; find the "
            "highest load that stays within your latency target. Keep an unbatched baseline.", None),
        7: ("Tune and cost it",
            "Change one thing at a time (batch limits, max model length, quantization, GPU memory "
            "share) and measure it; compute cost per million tokens from throughput and the hourly price.",
            None),
        8: ("Deploy and draft the write-up",
            "Deploy the server with health checks and a benchmark script anyone can rerun; record "
            "hardware and settings; draft the write-up from the measurements.", None),
    },
    "applied": {
        5: ("Task, data splits, base-model score",
            "Work lab 05_lora_finetune: pick a narrow task, split train, validation and held-out test "
            "sets, score the base model on the held-out set before any training.", "05_lora_finetune"),
        6: ("LoRA fine-tune",
            "Train a LoRA adapter on the training split, watch validation loss, keep the test set "
            "untouched; record training time, memory and adapter size.", None),
        7: ("Prove it on held-out data",
            "Score the tuned model on the held-out set against the base model and a prompt-only "
            "baseline; sweep one LoRA setting (rank or steps) and see how the result moves.", None),
        8: ("Deploy and draft the write-up",
            "Serve the base model with the adapter, check the held-out score reproduces from a clean "
            "checkout, draft the write-up from the measurements.", None),
    },
    "agents": {
        5: ("Task, tools and a held-out test set",
            "Work lab 06_agent_with_eval: an on-call agent with a validated loop, constrained decoding "
            "and a harness with intervals. Then choose one narrow real task and its tools; write the "
            "held-out test set with expected outcomes before building, and a separate development set.",
            "06_agent_with_eval"),
        6: ("Agent loop and scoring harness",
            "Build the tool-using loop (step limit, retries) and a harness that scores it on the "
            "development set: success rate, malformed or failed tool calls, steps and tokens per task.",
            None),
        7: ("Improve, then score once on held-out",
            "Fix the largest failure classes on the development set against a simpler baseline agent; "
            "then score once on the held-out test set: accuracy, latency and cost per task.", None),
        8: ("Deploy and draft the write-up",
            "Deploy the agent with every step logged and a budget guard; draft the write-up from "
            "the measurements.", None),
    },
}


def _check_track(track: str) -> Track:
    if track not in TRACKS:
        raise ValueError(f"unknown track {track!r}; choose one of: {', '.join(TRACKS)}")
    return TRACKS[track]


def phase_of_day(day: int) -> Phase:
    """The phase that day ``day`` (1 to 90) belongs to."""
    for phase in PHASES:
        if phase.first_day <= day <= phase.last_day:
            return phase
    raise ValueError(f"day {day} is outside the plan (days 1 to {DAYS})")


def weekly_targets(track: str) -> list[WeekTarget]:
    """The 13 weekly targets for ``track``; weeks 5-8 are the track's own."""
    _check_track(track)
    weeks = []
    for week in range(1, 14):
        first, last = 7 * week - 6, min(7 * week, DAYS)
        title, detail, lab = _TRACK_WEEKS[track][week] if week in _TRACK_WEEKS[track] else _SHARED_WEEKS[week]
        if week == 5:  # the week opens with the last two days of Foundation
            detail = "Days 29-30: finish the Foundation deliverable. Then " + detail[0].lower() + detail[1:]
        phases = tuple(dict.fromkeys(phase_of_day(d).name for d in range(first, last + 1)))
        weeks.append(WeekTarget(week, first, last, phases, title, detail, lab))
    return weeks


def milestones(track: str | None = None) -> list[Milestone]:
    """The deliverables on days 30, 60 and 90; with ``track``, day 60 names that track's project."""
    day60 = _check_track(track).deliverable if track is not None else PHASES[1].deliverable
    return [
        Milestone(30, "Foundation", "Foundation deliverable", PHASES[0].deliverable),
        Milestone(60, "Build", "Build deliverable", day60),
        Milestone(90, "Position", "Position deliverable", PHASES[2].deliverable),
    ]


def parse_date(value) -> date:
    """A start date from ``YYYY-MM-DD`` text (or a ``date``), with an error that shows the form."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value).strip()
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        raise ValueError(f"start date {value!r} is not in the form YYYY-MM-DD (for example 2026-12-01)")
    try:
        return date.fromisoformat(text)
    except ValueError as error:
        raise ValueError(f"start date {value!r} is not a real calendar date ({error}); "
                         "expected YYYY-MM-DD, for example 2026-12-01") from None


def day_date(start, day: int) -> date:
    """The calendar date of plan day ``day``: day 1 is the start date itself."""
    return parse_date(start) + timedelta(days=day - 1)


@dataclass(frozen=True)
class DatedWeek:
    target: WeekTarget
    start: date
    end: date  # inclusive
    milestones: tuple[Milestone, ...]  # those falling inside the week


@dataclass(frozen=True)
class Schedule:
    start: date
    end: date  # day 90, inclusive
    track: Track
    hours_per_week: float
    weeks: tuple[DatedWeek, ...]
    milestones: tuple[tuple[Milestone, date], ...]


def schedule(start, track: str, hours_per_week: float = HOURS_PER_WEEK) -> Schedule:
    """The plan laid on the calendar from ``start`` for ``track``."""
    start = parse_date(start)
    info = _check_track(track)
    if not 1 <= hours_per_week <= 80:
        raise ValueError(f"hours per week must be between 1 and 80, not {hours_per_week:g} "
                         f"(the plan is sized for about {HOURS_PER_WEEK})")
    dated = tuple((m, day_date(start, m.day)) for m in milestones(track))
    weeks = tuple(
        DatedWeek(t, day_date(start, t.first_day), day_date(start, t.last_day),
                  tuple(m for m, _ in dated if t.first_day <= m.day <= t.last_day))
        for t in weekly_targets(track))
    return Schedule(start, day_date(start, DAYS), info, hours_per_week, weeks, dated)


# Markdown -----------------------------------------------------------------------------

def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _effort_note(hours: float) -> str:
    if hours == HOURS_PER_WEEK:
        return f"Effort: about {HOURS_PER_WEEK} hours a week, roughly half-time."
    if hours >= HOURS_PER_WEEK * 0.75:
        return f"Effort: {hours:g} hours a week (the plan is sized for about {HOURS_PER_WEEK})."
    finish = round(DAYS * HOURS_PER_WEEK / hours)
    return (f"Effort: {hours:g} hours a week. The plan is sized for about {HOURS_PER_WEEK}; at {hours:g} "
            f"the same work ends near day {finish}. To keep the dates, keep each week's measured "
            "result and drop its extras.")


def to_markdown(plan: Schedule) -> str:
    """The schedule as a Markdown page: dates, milestones to tick, a table of weeks."""
    lines = [
        f"# My ninety days: Backend to AI Engineer ({plan.track.name} track)",
        "",
        f"- Start: {plan.start:%A} {plan.start.isoformat()} (day 1)",
        f"- End: {plan.end:%A} {plan.end.isoformat()} (day {DAYS})",
        f"- Track: {plan.track.title}: {plan.track.summary}",
        f"- {_effort_note(plan.hours_per_week)}",
        "",
        "## Milestones",
        "",
    ]
    for m, when in plan.milestones:
        lines.append(f"- [ ] Day {m.day}, {when:%a} {when.isoformat()}: **{m.title}**: {m.deliverable}")
    lines += ["", "## Week by week", "",
              "| Week | Dates | Days | Phase | Target | Milestone |",
              "| ---: | --- | --- | --- | --- | --- |"]
    for w in plan.weeks:
        t = w.target
        target = f"**{t.title}**. {t.detail}"
        due = "; ".join(f"day {m.day}: {m.title}" for m in w.milestones)
        lines.append(f"| {t.week} | {w.start.isoformat()} to {w.end.isoformat()} | {t.first_day}-{t.last_day} "
                     f"| {' / '.join(t.phases)} | {_cell(target)} | {_cell(due)} |")
    lines += ["",
              f"Import `{ICS_NAME}` into your calendar to see each week's target and the milestones. "
              "Where a lab named here is not published yet, the phase's chapter in the book is the "
              "brief to work from. `labkit progress` shows which checks of your labs pass.", ""]
    return "\n".join(lines)


# The book's phase pages ----------------------------------------------------------------

# A phase page holds its weekly plan between these two lines, written by update_book_pages.
BOOK_BEGIN = "<!-- The weekly plan below is generated from labkit.course.plan: edit the plan, then run update_book_pages. -->"
BOOK_END = "<!-- End of the generated weekly plan. -->"


def _track_label(track: Track) -> str:
    return track.title.split(":")[0]


def phase_weeks_markdown(number: int) -> str:
    """The weeks that touch phase ``number`` (1-3), as the Markdown its book page shows.

    One row per week; a week whose target depends on the track (weeks 5-8) gets one row per
    track. The same data as ``labkit plan``, without dates.
    """
    phase = next((p for p in PHASES if p.number == number), None)
    if phase is None:
        raise ValueError(f"no phase {number}; the phases are {', '.join(str(p.number) for p in PHASES)}")
    by_track = {name: weekly_targets(name) for name in TRACKS}
    first_track = next(iter(TRACKS))
    weeks = [w for w in by_track[first_track] if w.last_day >= phase.first_day and w.first_day <= phase.last_day]
    shared = [w.week for w in weeks if len({(ws[w.week - 1].title, ws[w.week - 1].detail)
                                             for ws in by_track.values()}) == 1]
    straddle = [w for w in weeks if len(w.phases) > 1]
    lines = [f"Weeks {weeks[0].week}-{weeks[-1].week} touch this phase (days {phase.first_day}-{phase.last_day}), "
             f"at about {HOURS_PER_WEEK} hours a week. A week is seven days from your start date"
             + (", so " + " and ".join(f"week {w.week} (days {w.first_day}-{w.last_day}) belongs to "
                                       f"{' and '.join(w.phases)}" for w in straddle) if straddle else "")
             + ".", "",
             "| Week | Days | Track | Target |", "| ---: | --- | --- | --- |"]
    for w in weeks:
        rows = [("every track", w)] if w.week in shared else \
            [(_track_label(TRACKS[name]), by_track[name][w.week - 1]) for name in TRACKS]
        for label, target in rows:
            lines.append(f"| {w.week} | {w.first_day}-{w.last_day} | {label} | "
                         f"{_cell(f'**{target.title}**. {target.detail}')} |")
    return "\n".join(lines)


def update_book_pages(book_dir, check: bool = False) -> list[Path]:
    """Rewrite the generated weekly plan in ``book_dir/phaseN/index.md``; return the pages that changed.

    With ``check``, write nothing and return the pages that are out of date. A page without
    the two marker lines is an error: the plan would silently be missing from it.
    """
    stale = []
    for phase in PHASES:
        page = Path(book_dir) / f"phase{phase.number}" / "index.md"
        text = page.read_text(encoding="utf-8")
        if text.count(BOOK_BEGIN) != 1 or text.count(BOOK_END) != 1:
            raise ValueError(f"{page} needs the lines {BOOK_BEGIN!r} and {BOOK_END!r} once each, "
                             "around its weekly plan")
        head, rest = text.split(BOOK_BEGIN)
        _, tail = rest.split(BOOK_END)
        wanted = f"{head}{BOOK_BEGIN}\n\n{phase_weeks_markdown(phase.number)}\n\n{BOOK_END}{tail}"
        if wanted != text:
            stale.append(page)
            if not check:
                page.write_text(wanted, encoding="utf-8")
    return stale


# iCalendar (RFC 5545) ------------------------------------------------------------------

PRODID = "-//Backend to AI Engineer in 90 days//labkit plan//EN"


def ics_escape(text: str) -> str:
    """Escape TEXT for a property value: backslash, semicolon, comma and newline (RFC 5545 3.3.11)."""
    return (text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
            .replace("\r\n", "\\n").replace("\n", "\\n"))


def ics_fold(line: str, limit: int = 75) -> list[str]:
    """Split a content line into lines of at most ``limit`` octets; continuations start with a space.

    Splits fall between characters, never inside a multi-byte UTF-8 sequence (RFC 5545 3.1).
    """
    out, current, size = [], "", 0
    for ch in line:
        width = len(ch.encode("utf-8"))
        if size + width > limit:
            out.append(current)
            current, size = " ", 1
        current += ch
        size += width
    out.append(current)
    return out


def _event(uid: str, stamp: str, first: date, last: date, summary: str, description: str) -> list[str]:
    return [
        "BEGIN:VEVENT",
        f"UID:{uid}",
        f"DTSTAMP:{stamp}",
        f"DTSTART;VALUE=DATE:{first:%Y%m%d}",
        f"DTEND;VALUE=DATE:{last + timedelta(days=1):%Y%m%d}",  # exclusive, per RFC 5545
        f"SUMMARY:{ics_escape(summary)}",
        f"DESCRIPTION:{ics_escape(description)}",
        "TRANSP:TRANSPARENT",  # a week-long target should not mark the whole week busy
        "END:VEVENT",
    ]


def to_ics(plan: Schedule, now: datetime | None = None) -> str:
    """The schedule as an iCalendar file: one all-day event per week and per milestone.

    UIDs are derived from the start date, track and week, so importing a regenerated plan
    updates the events instead of duplicating them. ``now`` fixes DTSTAMP (tests).
    """
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    base = f"{plan.start:%Y%m%d}-{plan.track.name}"
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", f"PRODID:{PRODID}", "CALSCALE:GREGORIAN", "METHOD:PUBLISH",
             f"X-WR-CALNAME:{ics_escape(f'Ninety days ({plan.track.name} track)')}"]
    for w in plan.weeks:
        t = w.target
        description = (f"{t.detail}\n\nDays {t.first_day}-{t.last_day}, phase {' / '.join(t.phases)}, "
                       f"{plan.track.name} track.")
        lines += _event(f"week-{t.week:02d}-{base}@labkit", stamp, w.start, w.end,
                        f"Week {t.week}: {t.title}", description)
    for m, when in plan.milestones:
        lines += _event(f"day-{m.day}-{base}@labkit", stamp, when, when,
                        f"Day {m.day}: {m.title}", f"Due today ({m.phase}): {m.deliverable}.")
    lines.append("END:VCALENDAR")
    return "".join(folded + "\r\n" for line in lines for folded in ics_fold(line))


def write_plan(start, track: str, out_dir=".", hours_per_week: float = HOURS_PER_WEEK,
               force: bool = False, now: datetime | None = None) -> list[Path]:
    """Write ``ninety-day-plan.md`` and ``ninety-day-plan.ics`` into ``out_dir``; return their paths.

    Existing files are kept unless ``force``: the Markdown is a checklist the learner may
    have ticked, and overwriting it would lose that.
    """
    plan = schedule(start, track, hours_per_week)
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file, not a folder; pass a folder with --out")
    paths = [out / MARKDOWN_NAME, out / ICS_NAME]
    existing = [str(p) for p in paths if p.exists()]
    if existing and not force:
        raise ValueError(f"{' and '.join(existing)} already exist{'s' if len(existing) == 1 else ''}; "
                         "pass --force to overwrite, or choose another folder with --out")
    out.mkdir(parents=True, exist_ok=True)
    paths[0].write_text(to_markdown(plan), encoding="utf-8")
    paths[1].write_bytes(to_ics(plan, now).encode("utf-8"))  # bytes: keep CRLF as written
    return paths


def plan_timeline(path=None):
    """The ninety-day plan at a glance, drawn from the plan above (the book's landing figure).

    Saved as SVG without a timestamp, so the same plan always gives the same file.
    """
    import matplotlib.pyplot as plt

    week_rows = weekly_targets(next(iter(TRACKS)))
    colours = {"Foundation": "#4C72B0", "Build": "#DD8452", "Position": "#55A868"}
    fig, ax = plt.subplots(figsize=(11, 6.2), dpi=100)
    rows = len(week_rows) + 1
    for phase in PHASES:  # one band per phase on the top row
        ax.barh(rows, phase.last_day - phase.first_day + 1, left=phase.first_day - 0.5, height=0.8,
                color=colours[phase.name])
        ax.text((phase.first_day + phase.last_day) / 2, rows, f"{phase.name}, days {phase.first_day}-{phase.last_day}",
                ha="center", va="center", color="white", fontsize=9, weight="bold")
    for week in week_rows:  # one bar per week, labelled with its target
        y = rows - week.week
        title = week.title
        if 5 <= week.week <= 8:
            title = f"Track work ({' / '.join(TRACKS)})"
        ax.barh(y, week.last_day - week.first_day + 1, left=week.first_day - 0.5, height=0.6,
                color=colours[week.phases[-1]], alpha=0.35)
        right = week.last_day > 60
        ax.text(week.first_day - 1 if right else week.last_day + 1, y, f"W{week.week}  {title}",
                ha="right" if right else "left", va="center", fontsize=8)
    for milestone in milestones():
        ax.axvline(milestone.day + 0.5, color="#333333", linestyle="--", linewidth=1)
        label = textwrap.fill(f"Day {milestone.day}: {milestone.deliverable}", 34)
        ax.text(milestone.day - 0.5, -0.1, label, ha="right", va="top", fontsize=7.5)
    ax.set_xlim(0, DAYS + 1)
    ax.set_ylim(-2.8, rows + 0.7)
    ax.set_yticks([])
    ax.set_xticks([1, 15, 30, 45, 60, 75, 90])
    ax.set_xlabel("day")
    ax.set_title("Ninety days, three phases, one deliverable at the end of each", fontsize=11)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with plt.rc_context({"svg.hashsalt": "labkit", "svg.fonttype": "none"}):
            fig.savefig(path, format="svg", metadata={"Date": None})
        plt.close(fig)
    return fig
