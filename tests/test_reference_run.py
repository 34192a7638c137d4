"""The reference run on the lab pages: what each page declares, the harvest after grading, the
checks that stop a build without it, and the section the book's extension adds."""
from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from conftest import RELEASE, ROOT, SOURCE
from labkit.course import reference_run
from labkit.course.reference_run import PAGES, ReferenceRunError

SAMPLES = ROOT / "src" / "labkit" / "data" / "sample_results"
HARVESTED = reference_run.folder(ROOT)  # read before any test points the folder elsewhere
HARDWARE = "CPU: 2 cores, Test CPU, flags avx2"


@pytest.fixture(autouse=True)
def scratch_folder(tmp_path, monkeypatch):
    """Every test harvests into its own folder and starts with the run not required."""
    monkeypatch.setenv(reference_run.FOLDER_ENV, str(tmp_path / "reference-run"))
    monkeypatch.delenv(reference_run.REQUIRED_ENV, raising=False)


def fake_results(tmp_path: Path, stem: str, data: dict | None = None) -> Path:
    """A results folder as lab ``stem`` leaves it: its figures, its JSON, and things never copied."""
    page = PAGES[stem]
    folder = tmp_path / f"results-{stem}"
    folder.mkdir(exist_ok=True)
    for name, _ in page.figures:
        (folder / name).write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 64)
    if page.results:
        (folder / page.results).write_text(json.dumps(data if data is not None else sample(stem)))
    (folder / "report.md").write_text("# a report\n")
    (folder / "solution.py").write_text("def answer(): return 42\n")
    (folder / "executed.ipynb").write_text("{}")
    (folder / "07_deploy").mkdir(exist_ok=True)
    (folder / "07_deploy" / "app.json").write_text("{}")
    return folder


def sample(stem: str) -> dict:
    data = json.loads((SAMPLES / PAGES[stem].results).read_text())
    data.pop("sample", None)
    return data


def harvest(tmp_path, stem="03_rag_with_eval", data=None, score=(19.0, 19.0)) -> Path:
    return reference_run.harvest(stem, fake_results(tmp_path, stem, data), score, ROOT,
                                 hardware=HARDWARE, precision="bfloat16")


# What each page declares, checked against the labs.

def test_every_lab_page_declares_its_reference_run():
    labs = {lab.stem: lab.parent.name for lab in RELEASE.glob("phase*/*.ipynb")}
    assert labs and labs == {stem: page.phase for stem, page in PAGES.items()}
    for stem, page in PAGES.items():
        assert page.figures, f"{stem}: a lab page shows at least its figure"
        assert bool(page.results) == bool(page.numbers), f"{stem}: numbers need a results file, and the reverse"


@pytest.mark.parametrize("stem", PAGES)
def test_declared_files_are_the_ones_the_lab_writes(stem):
    """Each declared figure and results file is named in the lab's source, where it is saved."""
    text = "".join("".join(cell["source"]) for cell in json.loads(next(SOURCE.glob(f"phase*/{stem}.ipynb")).read_text())["cells"])
    page = PAGES[stem]
    for name in [name for name, _ in page.figures] + ([page.results] if page.results else []):
        assert f'"{name}"' in text, f"{stem} never writes {name}"


def test_declaration_agrees_with_what_the_portfolio_lab_reads():
    from labkit.portfolio import LABS

    for stem, outputs in LABS.items():
        assert PAGES[stem].results == outputs.results
        assert tuple(name for name, _ in PAGES[stem].figures) == outputs.figures


def real_results(stem: str) -> Path | None:
    """A results JSON this lab really wrote: the harvested run, else the newest run of the lab left
    under _build/, else the course's sample for it."""
    name = PAGES[stem].results
    harvested = HARVESTED / stem / name
    if harvested.is_file():
        return harvested
    patterns = (f"_build/*/course*/autograder/autograded/reference{stem[:2]}/*/results/{name}",  # the autograder test's
                f"_build/*/results/{name}", f"_build/*/*/results/{name}")  # a maintainer's run of the lab
    runs = sorted((path for pattern in patterns for path in ROOT.glob(pattern)), key=lambda path: path.stat().st_mtime)
    if runs:
        return runs[-1]
    return SAMPLES / name if (SAMPLES / name).is_file() else None


@pytest.mark.parametrize("stem", [stem for stem, page in PAGES.items() if page.numbers])
def test_every_declared_number_is_in_a_real_results_file(stem):
    found = real_results(stem)
    if found is None:
        pytest.skip(f"no results of {stem} on this machine yet; the book's build checks them after CI's run")
    data = json.loads(found.read_text())
    for number in PAGES[stem].numbers:
        written = number.render(data, str(found))
        assert written.strip() and "None" not in written, (number.label, written)


# The harvest.

def test_harvest_copies_results_and_figures_only_and_records_the_run(tmp_path):
    target = harvest(tmp_path)
    assert target == tmp_path / "reference-run" / "03_rag_with_eval"
    assert sorted(p.name for p in target.iterdir()) == ["03_rag_retrieval.png", "03_rag_with_eval.json", "run.json"]
    run = json.loads((target / "run.json").read_text())
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert run["commit"] == head and isinstance(run["uncommitted_changes"], bool)
    assert run["hardware"] == HARDWARE and run["precision"] == "bfloat16" and run["mode"] == "quick"
    assert run["score"] == {"points": 19.0, "max_points": 19.0}
    assert run["date"].endswith("+00:00"), "the date is in UTC"


def test_harvest_replaces_an_earlier_run(tmp_path):
    target = harvest(tmp_path)
    (target / "stale.png").write_bytes(b"old")
    shutil.rmtree(tmp_path / "results-03_rag_with_eval")
    harvest(tmp_path, score=(18.0, 19.0))
    assert not (target / "stale.png").exists()
    assert json.loads((target / "run.json").read_text())["score"]["points"] == 18.0


def test_harvest_without_results_names_the_folder(tmp_path):
    with pytest.raises(ReferenceRunError, match="holds no results"):
        reference_run.harvest("03_rag_with_eval", tmp_path / "nothing", (1, 1), ROOT, hardware=HARDWARE, precision="x")


def test_harvest_of_an_undeclared_lab_is_refused(tmp_path):
    with pytest.raises(ReferenceRunError, match="PAGES"):
        reference_run.harvest("10_new_lab", tmp_path, (1, 1), ROOT, hardware=HARDWARE, precision="x")


def test_a_result_the_page_declares_but_the_run_lacks_is_an_error_naming_lab_key_and_remedy(tmp_path):
    data = sample("03_rag_with_eval")
    del data["dev_scores"]["dense"]
    with pytest.raises(ReferenceRunError) as raised:
        harvest(tmp_path, data=data)
    message = str(raised.value)
    assert "03_rag_with_eval" in message and "['dev_scores']['dense']" in message
    assert "tests/test_autograder.py" in message and "03_rag_with_eval'" in message


def test_a_missing_figure_and_a_student_mode_run_are_errors(tmp_path):
    harvest(tmp_path)
    target = tmp_path / "reference-run" / "03_rag_with_eval"
    (target / "03_rag_retrieval.png").unlink()
    with pytest.raises(ReferenceRunError, match="figure 03_rag_retrieval.png is missing"):
        reference_run.load("03_rag_with_eval", ROOT)
    data = dict(sample("03_rag_with_eval"), mode="student")
    with pytest.raises(ReferenceRunError, match="student-mode run"):
        harvest(tmp_path, data=data)


def test_no_run_at_all_says_how_to_make_it():
    with pytest.raises(ReferenceRunError) as raised:
        reference_run.load("05_lora_finetune", ROOT)
    assert raised.value.reason.startswith("no reference run in ")
    assert "test_reference_runs_clean_and_scores_full_marks and 05_lora_finetune" in str(raised.value)


def test_a_null_shows_the_declared_text_and_is_otherwise_an_error(tmp_path):
    data = sample("04_serve_with_vllm")
    data["best_under_target"] = None
    harvest(tmp_path, "04_serve_with_vllm", data=data, score=(15.0, 15.0))
    numbers = dict(reference_run.load("04_serve_with_vllm", ROOT).numbers)
    assert numbers["best throughput under the latency target"] == "no setting met the latency target"
    data = dict(sample("04_serve_with_vllm"), engine=None)
    with pytest.raises(ReferenceRunError, match=r"\['engine'\] is null"):
        harvest(tmp_path, "04_serve_with_vllm", data=data)


# What the page says.

def test_the_section_states_date_hardware_commit_score_and_shows_numbers_and_figures(tmp_path):
    harvest(tmp_path)
    reference = reference_run.load("03_rag_with_eval", ROOT)
    text = reference_run.render(reference, ["../fig/03_rag_retrieval.png"])
    run = reference.run
    assert text.startswith("## The reference run\n")
    assert "quick mode" in text and "not a portfolio number" in text
    assert run["commit"][:10] in text and "UTC" in text and "19 of 19 points" in text
    assert reference_run.escape(HARDWARE) in text
    hit_rate = sample("03_rag_with_eval")["dev_scores"]["hybrid (RRF)"]["hit rate@5"]
    assert f"| hit rate@5 on the development set, hybrid \\(RRF\\) | {hit_rate:.2f}" in text
    assert "```{figure} ../fig/03_rag_retrieval.png" in text


def test_a_value_cannot_break_the_table():
    assert reference_run.escape("a | b *c* $x$") == "a \\| b \\*c\\* \\$x\\$"


# The book's extension, without building the book (tests/test_book.py builds it).

def extension():
    spec = importlib.util.spec_from_file_location("reference_run_ext", ROOT / "book" / "_ext" / "reference_run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_app():
    return SimpleNamespace(srcdir=ROOT, env=SimpleNamespace(doc2path=lambda docname: str(ROOT / f"{docname}.ipynb")))


def page_source(docname: str) -> list[str]:
    return [(ROOT / f"{docname}.ipynb").read_text()]


def test_extension_appends_the_section_to_lab_pages_only(tmp_path):
    ext, app = extension(), fake_app()
    harvest(tmp_path)
    source = page_source("notebooks/phase1/03_rag_with_eval")
    ext.add_section(app, "notebooks/phase1/03_rag_with_eval", source)
    last = json.loads(source[0])["cells"][-1]
    assert last["cell_type"] == "markdown" and "19 of 19 points" in last["source"]
    figure = (Path(ROOT / "notebooks" / "phase1") / last["source"].split("```{figure} ")[1].split("\n")[0]).resolve()
    assert figure == (tmp_path / "reference-run" / "03_rag_with_eval" / "03_rag_retrieval.png").resolve()
    other = ["# A chapter\n"]
    ext.add_section(app, "book/intro", other)
    assert other == ["# A chapter\n"]


def test_extension_without_a_run_shows_a_placeholder_unless_the_run_is_required(monkeypatch):
    ext, app = extension(), fake_app()
    source = page_source("notebooks/phase2/05_lora_finetune")
    ext.add_section(app, "notebooks/phase2/05_lora_finetune", source)
    assert json.loads(source[0])["cells"][-1]["source"] == reference_run.placeholder()
    monkeypatch.setenv(reference_run.REQUIRED_ENV, "1")
    with pytest.raises(ext.ReferenceRunMissing, match="05_lora_finetune"):
        ext.add_section(app, "notebooks/phase2/05_lora_finetune", page_source("notebooks/phase2/05_lora_finetune"))
    with pytest.raises(ext.ReferenceRunMissing) as raised:
        ext.check_every_lab(app)
    assert all(f"lab {stem}:" in str(raised.value) for stem in PAGES)


def test_extension_rereads_a_lab_page_when_its_run_changes(tmp_path):
    ext, app = extension(), fake_app()
    app.env.found_docs = {"notebooks/phase1/03_rag_with_eval", "book/intro"}
    ext.add_section(app, "notebooks/phase1/03_rag_with_eval", page_source("notebooks/phase1/03_rag_with_eval"))
    assert ext.outdated_lab_pages(app, app.env, set(), set(), set()) == []
    harvest(tmp_path)
    assert ext.outdated_lab_pages(app, app.env, set(), set(), set()) == ["notebooks/phase1/03_rag_with_eval"]


def test_a_session_that_grades_every_reference_builds_the_book_requiring_the_runs():
    from conftest import SOURCE_LABS, ran_every_reference

    def item(stem, test="test_reference_runs_clean_and_scores_full_marks"):
        return SimpleNamespace(callspec=SimpleNamespace(id=stem), originalname=test)

    assert ran_every_reference(SimpleNamespace(items=[item(lab.stem) for lab in SOURCE_LABS]))
    assert not ran_every_reference(SimpleNamespace(items=[item(lab.stem) for lab in SOURCE_LABS[1:]]))
    assert not ran_every_reference(SimpleNamespace(items=[item(lab.stem, "test_tampering_gains_nothing") for lab in SOURCE_LABS]))


def test_the_book_registers_the_extension():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["sphinx"]["local_extensions"]["reference_run"] == "book/_ext"


def test_the_published_site_is_rebuilt_with_the_reference_run_required():
    """CI's tests save the runs; the site that is uploaded must then be built again, requiring them."""
    steps = yaml.safe_load((ROOT / ".github" / "workflows" / "course.yml").read_text())["jobs"]["test"]["steps"]
    runs = [str(step.get("run", "")).strip() for step in steps]
    tests = runs.index("bash .ci/run")
    rebuild = next(i for i, step in enumerate(steps) if "jupyter-book build ." in str(step.get("run", "")))
    upload = next(i for i, step in enumerate(steps) if str(step.get("uses", "")).startswith("actions/upload-pages-artifact"))
    assert tests < rebuild < upload
    assert str(steps[rebuild].get("env", {}).get(reference_run.REQUIRED_ENV)) == "1"
    assert "--all" in runs[rebuild] and "-W" in runs[rebuild]
