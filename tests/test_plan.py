"""The ninety-day plan: its data, the dates it lays out, the Markdown and iCalendar files."""
from __future__ import annotations

import re
from datetime import UTC, date, datetime

import pytest

from labkit.course import cli, plan

NOW = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
START = date(2026, 12, 1)


def test_plan_data_is_complete():
    assert [(p.name, p.first_day, p.last_day) for p in plan.PHASES] == [
        ("Foundation", 1, 30), ("Build", 31, 60), ("Position", 61, 90)]
    assert [m.day for m in plan.milestones()] == [30, 60, 90]
    for track in plan.TRACKS:
        weeks = plan.weekly_targets(track)
        assert [w.week for w in weeks] == list(range(1, 14))
        assert weeks[0].first_day == 1 and weeks[-1].last_day == 90
        assert all(b.first_day == a.last_day + 1 for a, b in zip(weeks, weeks[1:])), "no gaps, no overlaps"
        assert all(w.title and w.detail for w in weeks)
    assert plan.weekly_targets("infra")[4].phases == ("Foundation", "Build")


def test_weeks_5_to_8_belong_to_the_track():
    by_track = {t: plan.weekly_targets(t) for t in plan.TRACKS}
    for week in range(1, 14):
        texts = {t: (weeks[week - 1].title, weeks[week - 1].detail) for t, weeks in by_track.items()}
        if 5 <= week <= 8:
            assert len(set(texts.values())) == 3, f"week {week} should differ between tracks"
        else:
            assert len(set(texts.values())) == 1, f"week {week} is the same for every track"
    assert by_track["infra"][4].lab == "04_serve_with_vllm"
    assert by_track["applied"][4].lab == "05_lora_finetune"
    assert by_track["agents"][4].lab == "06_agent_with_eval"
    assert "held-out" in by_track["agents"][4].detail


def test_schedule_dates():
    s = plan.schedule("2026-12-01", "infra")
    assert s.start == START and s.end == date(2027, 2, 28)
    assert plan.day_date(START, 1) == START
    assert {m.day: when for m, when in s.milestones} == {
        30: date(2026, 12, 30), 60: date(2027, 1, 29), 90: date(2027, 2, 28)}
    assert (s.weeks[0].start, s.weeks[0].end) == (START, date(2026, 12, 7))
    assert (s.weeks[-1].start, s.weeks[-1].end) == (date(2027, 2, 23), date(2027, 2, 28))
    assert [m.day for m in s.weeks[4].milestones] == [30]
    assert [m.day for m in s.weeks[8].milestones] == [60]
    assert [m.day for m in s.weeks[12].milestones] == [90]


def test_markdown_has_dates_weeks_and_milestones():
    text = plan.to_markdown(plan.schedule(START, "applied"))
    assert text.startswith("# ") and "2026-12-01" in text and "2027-02-28" in text
    assert text.count("- [ ] Day ") == 3
    for day, when in [(30, "2026-12-30"), (60, "2027-01-29"), (90, "2027-02-28")]:
        assert re.search(rf"- \[ \] Day {day}, \w+ {when}", text)
    assert "LoRA" in text and "held-out" in text
    rows = [line for line in text.splitlines() if re.match(r"\| \d+ \|", line)]
    assert len(rows) == 13 and all(row.count(" | ") == 5 for row in rows)


def _unfold(ics: str) -> list[str]:
    return ics.replace("\r\n ", "").split("\r\n")[:-1]


def test_ics_structure():
    ics = plan.to_ics(plan.schedule(START, "agents"), now=NOW)
    raw = ics.encode("utf-8")
    assert raw.endswith(b"\r\n") and b"\n" not in raw.replace(b"\r\n", b"")
    assert all(len(line) <= 75 for line in raw.split(b"\r\n"))
    lines = _unfold(ics)
    assert lines[0] == "BEGIN:VCALENDAR" and lines[-1] == "END:VCALENDAR"
    assert "VERSION:2.0" in lines and any(line.startswith("PRODID:") for line in lines)
    depth = 0
    for line in lines:  # BEGIN/END balanced and properly nested
        if line.startswith("BEGIN:"):
            depth += 1
        elif line.startswith("END:"):
            depth -= 1
            assert depth >= 0
    assert depth == 0
    events = re.findall(r"BEGIN:VEVENT\r\n(.*?)END:VEVENT", "\r\n".join(lines) + "\r\n", re.S)
    assert len(events) == 13 + 3
    fields = [dict(line.split(":", 1) for line in event.strip().split("\r\n")) for event in events]
    for f in fields:
        assert {"UID", "DTSTAMP", "DTSTART;VALUE=DATE", "DTEND;VALUE=DATE", "SUMMARY", "DESCRIPTION"} <= set(f)
        assert f["DTSTAMP"] == "20261120T093000Z"
        assert f["DTEND;VALUE=DATE"] > f["DTSTART;VALUE=DATE"]
    assert len({f["UID"] for f in fields}) == 16
    starts = [f["DTSTART;VALUE=DATE"] for f in fields]
    assert starts[0] == "20261201" and starts[12] == "20270223"
    assert starts[13:] == ["20261230", "20270129", "20270228"]
    assert fields[12]["DTEND;VALUE=DATE"] == "20270301", "week 13 ends after day 90 (DTEND is exclusive)"


def test_ics_escaping_and_folding():
    assert plan.ics_escape("a,b;c\\d\ne") == "a\\,b\\;c\\\\d\\ne"
    ics = plan.to_ics(plan.schedule(START, "infra"), now=NOW)
    summary = next(line for line in _unfold(ics) if line.startswith("SUMMARY:Week 1:"))
    assert summary == "SUMMARY:Week 1: Embeddings: text as vectors"
    unfolded = "\n".join(_unfold(ics))
    assert "cosine similarity\\, top-k search\\, recall@k" in unfolded  # commas escaped
    assert "local chat model\\; the whole pipeline" in unfolded  # semicolons escaped
    assert "a first agent in LangChain.\\n\\nDays 1-7" in unfolded  # newlines written as \n
    long = "DESCRIPTION:" + "é" * 100  # two octets each: folds must not split a character
    folded = plan.ics_fold(long)
    assert all(len(part.encode()) <= 75 for part in folded)
    assert "".join(part[1:] if i else part for i, part in enumerate(folded)) == long


@pytest.mark.parametrize("bad", ["2026-13-01", "tomorrow", "2026-02-30", "20261201", "2026-1-5"])
def test_bad_dates_are_refused(bad):
    with pytest.raises(ValueError, match="YYYY-MM-DD") as error:
        plan.schedule(bad, "infra")
    assert repr(bad) in str(error.value)


def test_unknown_track_lists_the_tracks():
    with pytest.raises(ValueError, match="infra, applied, agents"):
        plan.weekly_targets("frontend")
    with pytest.raises(ValueError, match="unknown track 'frontend'"):
        plan.schedule(START, "frontend")
    with pytest.raises(ValueError, match="hours per week"):
        plan.schedule(START, "infra", hours_per_week=0)


def test_cli_writes_both_files_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "plan"
    assert cli.main(["plan", "--start", "2026-12-01", "--track", "infra", "--out", str(out)]) == 0
    md, ics = out / "ninety-day-plan.md", out / "ninety-day-plan.ics"
    assert md.is_file() and ics.read_bytes().startswith(b"BEGIN:VCALENDAR\r\n")
    assert "wrote" in capsys.readouterr().out
    md.write_text("my ticked checklist")
    assert cli.main(["plan", "--start", "2026-12-01", "--track", "infra", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "already exist" in err and "--force" in err
    assert md.read_text() == "my ticked checklist", "nothing is overwritten without --force"
    assert cli.main(["plan", "--start", "2026-12-01", "--track", "applied", "--out", str(out), "--force"]) == 0
    assert "LoRA" in md.read_text()


def test_cli_low_hours_note(tmp_path):
    assert cli.main(["plan", "--start", "2026-12-01", "--track", "agents", "--out", str(tmp_path),
                     "--hours-per-week", "10"]) == 0
    assert "near day 180" in (tmp_path / "ninety-day-plan.md").read_text()


@pytest.mark.parametrize("args, expected", [
    (["--start", "2026-02-30", "--track", "infra"], "'2026-02-30' is not a real calendar date"),
    (["--start", "tomorrow", "--track", "infra"], "'tomorrow' is not in the form YYYY-MM-DD"),
    (["--start", "2026-12-01", "--track", "ml"], "choose one of: infra, applied, agents"),
])
def test_cli_bad_input_exits_2_with_one_line(tmp_path, capsys, args, expected):
    assert cli.main(["plan", *args, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1
    assert not list(tmp_path.iterdir()), "nothing written on bad input"


def test_book_phase_pages_show_the_plan_itself():
    """The weekly plans on the phase pages are generated from labkit.course.plan, so they cannot disagree."""
    from conftest import ROOT

    stale = plan.update_book_pages(ROOT / "book", check=True)
    assert not stale, (f"{[str(p) for p in stale]} show an old weekly plan; regenerate them: "
                       ".venv/bin/python -c \"from labkit.course import plan; plan.update_book_pages('book')\"")
    phase1 = (ROOT / "book" / "phase1" / "index.md").read_text()
    assert "| 5 | 29-35 |" in phase1 and "| 4 | 22-28 |" in phase1


def test_phase_tables_cover_each_phase_and_refuse_bad_input(tmp_path):
    for phase in plan.PHASES:
        text = plan.phase_weeks_markdown(phase.number)
        days = [tuple(map(int, m)) for m in re.findall(r"^\| \d+ \| (\d+)-(\d+) \|", text, flags=re.M)]
        assert min(d[0] for d in days) <= phase.first_day and max(d[1] for d in days) >= phase.last_day
        assert all(first <= phase.last_day and last >= phase.first_day for first, last in days)
    assert plan.phase_weeks_markdown(2).count("| 6 | 36-42 |") == len(plan.TRACKS), "one row per track"
    with pytest.raises(ValueError, match="no phase 4"):
        plan.phase_weeks_markdown(4)
    for n in (1, 2, 3):
        (tmp_path / f"phase{n}").mkdir()
        (tmp_path / f"phase{n}" / "index.md").write_text(f"# P{n}\n\n{plan.BOOK_BEGIN}\nold\n{plan.BOOK_END}\nrest\n")
    assert len(plan.update_book_pages(tmp_path, check=True)) == 3
    assert "old" in (tmp_path / "phase1" / "index.md").read_text(), "check mode writes nothing"
    assert len(plan.update_book_pages(tmp_path)) == 3 and plan.update_book_pages(tmp_path, check=True) == []
    assert (tmp_path / "phase3" / "index.md").read_text().endswith(f"{plan.BOOK_END}\nrest\n")
    (tmp_path / "phase2" / "index.md").write_text("# no markers\n")
    with pytest.raises(ValueError, match="needs the lines"):
        plan.update_book_pages(tmp_path)
