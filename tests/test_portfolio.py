"""labkit.portfolio: finding and reading the labs' results, the samples, and the HTML rendering."""
from __future__ import annotations

import json
import os
import shutil

import pytest

from conftest import ROOT
from labkit import portfolio
from labkit.portfolio import ArtefactError


def copy_sample(lab: str, folder, *, drop_marker=True) -> dict:
    """One lab's sample copied into ``folder`` as if the lab had written it there; returns its data."""
    outputs = portfolio.LABS[lab]
    source = portfolio.sample_folder()
    data = json.loads((source / outputs.results).read_text())
    if drop_marker:
        data.pop(portfolio.SAMPLE_KEY)
    (folder / outputs.results).write_text(json.dumps(data))
    for name in outputs.figures:
        shutil.copy(source / name, folder / name)
    return data


def test_every_lab_still_writes_the_files_the_write_up_reads():
    for lab in portfolio.LABS.values():
        source = (ROOT / "autograder" / "source" / lab.phase / f"{lab.stem}.ipynb").read_text()
        for name in (lab.results, *lab.figures):
            assert name in source, f"{lab.stem} no longer writes {name}"


def test_samples_are_marked_and_complete():
    samples = portfolio.load_samples()
    assert set(samples) == set(portfolio.LABS)
    for artefact in samples.values():
        assert artefact.is_sample and "SAMPLE" in artefact.sample["what"]
        assert artefact.quick_mode is True, "the samples are quick-mode runs and must say so"
        assert artefact.notebook is None
        assert all(path.is_file() for path in artefact.figures.values())
        assert "CPU" in artefact.value("hardware")
    assert (portfolio.sample_folder() / "README.md").read_text().startswith("# Sample results (not your measurements)")


def test_numbers_are_read_by_key(tmp_path):
    copy_sample("04_serve_with_vllm", tmp_path)
    artefact = portfolio.load_artefact("04_serve_with_vllm", tmp_path)
    assert not artefact.is_sample and artefact.quick_mode is True  # lab 04 records quick_mode, not mode
    assert artefact.number("best_under_target", "throughput_tok_s") > 0
    with pytest.raises(ArtefactError, match=r"no \['best_under_target'\]\['nope'\].*04_serve_with_vllm"):
        artefact.number("best_under_target", "nope")
    with pytest.raises(ArtefactError, match=r"not a number.*04_serve_with_vllm"):
        artefact.number("engine")


def test_mode_is_read_from_either_field(tmp_path):
    data = copy_sample("06_agent_with_eval", tmp_path)
    assert portfolio.load_artefact("06_agent_with_eval", tmp_path).quick_mode is True
    (tmp_path / "06_agent_with_eval.json").write_text(json.dumps(dict(data, mode="student")))
    assert portfolio.load_artefact("06_agent_with_eval", tmp_path).quick_mode is False


def test_missing_results_name_the_lab_and_where_it_looked(tmp_path):
    with pytest.raises(ArtefactError) as error:
        portfolio.load_artefact("05_lora_finetune", tmp_path)
    message = str(error.value)
    assert str(tmp_path / "05_lora_finetune.json") in message
    assert "notebooks/phase2/05_lora_finetune.ipynb" in message


@pytest.mark.parametrize("text, why", [("{not json", "not valid JSON"), ("[1, 2]", "JSON list"),
                                        ('{"mode": "student", "x": {"y": NaN}}', r"\['x'\]\['y'\] is not a finite number"),
                                        ('{"mode": "student", "x": [1, Infinity]}', r"\['x'\]\[1\] is not a finite")])
def test_malformed_results_name_the_file_and_the_lab(tmp_path, text, why):
    copy_sample("03_rag_with_eval", tmp_path)
    (tmp_path / "03_rag_with_eval.json").write_text(text)
    with pytest.raises(ArtefactError, match=why) as error:
        portfolio.load_artefact("03_rag_with_eval", tmp_path)
    assert "03_rag_with_eval.json" in str(error.value) and "lab 03_rag_with_eval" in str(error.value)


def test_a_missing_figure_is_named(tmp_path):
    copy_sample("03_rag_with_eval", tmp_path)
    (tmp_path / "03_rag_retrieval.png").unlink()
    with pytest.raises(ArtefactError, match=r"03_rag_retrieval.png does not exist.*lab 03_rag_with_eval"):
        portfolio.load_artefact("03_rag_with_eval", tmp_path)


def test_an_unknown_lab_is_refused():
    with pytest.raises(ArtefactError, match="unknown lab"):
        portfolio.load_artefact("99_nothing")


def test_results_are_found_beside_the_labs_notebook_with_its_time(tmp_path, monkeypatch):
    monkeypatch.delenv("LABKIT_RESULTS", raising=False)
    phase2 = tmp_path / "notebooks" / "phase2"
    (phase2 / "results").mkdir(parents=True)
    (tmp_path / "notebooks" / "phase3").mkdir()
    notebook = phase2 / "05_lora_finetune.ipynb"
    notebook.write_text("{}")
    copy_sample("05_lora_finetune", phase2 / "results")
    os.utime(notebook, (1_000_000, 1_000_000))
    artefact = portfolio.load_artefact("05_lora_finetune", start=tmp_path / "notebooks" / "phase3")
    assert artefact.path == phase2 / "results" / "05_lora_finetune.json"
    assert artefact.notebook == notebook and artefact.notebook_changed_at == 1_000_000
    assert artefact.written_at > artefact.notebook_changed_at


def test_labkit_results_overrides_the_search(tmp_path, monkeypatch):
    copy_sample("06_agent_with_eval", tmp_path)
    monkeypatch.setenv("LABKIT_RESULTS", str(tmp_path))
    assert portfolio.results_folders("06_agent_with_eval") == [tmp_path]
    assert portfolio.load_artefact("06_agent_with_eval").path == tmp_path / "06_agent_with_eval.json"


def test_render_html_embeds_figures_and_keeps_tables(tmp_path):
    shutil.copy(portfolio.sample_folder() / "03_rag_retrieval.png", tmp_path / "figure.png")
    page = portfolio.render_html("# Title\n\n| a | b |\n| --- | --- |\n| 1 | 2 |\n\n![retrieval](figure.png)\n",
                                 tmp_path / "out" / "report.html", title="A <report>", base=tmp_path)
    text = page.read_text()
    assert "<h1>Title</h1>" in text and "<table>" in text and "<td>2</td>" in text
    assert 'src="data:image/png;base64,' in text and "figure.png" not in text.replace('alt="retrieval"', "")
    assert "<title>A &lt;report&gt;</title>" in text


def test_render_html_names_a_missing_figure(tmp_path):
    with pytest.raises(ArtefactError, match="missing.png"):
        portfolio.render_html("![x](missing.png)", tmp_path / "r.html", title="r")
    assert not (tmp_path / "r.html").exists()


def test_an_artefact_of_your_own_project_reads_the_same_way(tmp_path):
    own = portfolio.Artefact(lab="my_project", path=tmp_path / "my_project.json",
                             data={"mode": "student", "p95_ms": 41.5, "note": "x"}, written_at=1.0,
                             figures={"latency.png": tmp_path / "latency.png"})
    assert own.outputs is None and own.quick_mode is False and own.number("p95_ms") == 41.5
    assert own.figure() == tmp_path / "latency.png"
    with pytest.raises(ArtefactError, match=r"my_project.json has no \['p99_ms'\].*my_project"):
        own.number("p99_ms")
    with pytest.raises(ArtefactError, match="no figure called 'other.png'"):
        own.figure("other.png")
