"""zoo tour, the README's first command, runs on the published models and writes its report."""

import re
from pathlib import Path

import pytest

from zoo.registry import load_manifest
from zoo.tour import _plain_smiles, _run_section, tour

pytestmark = pytest.mark.usefixtures("pyscf_one_thread")


def test_tour_reports_every_family_writes_figures_and_nothing_else(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    # recipes name folders relative to the working directory (runs/qm9_demo/...): none may appear
    workdir = tmp_path / "workdir"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    out = tmp_path / "tour"
    # the packaged recipes, the checkout's data
    sections = tour(out, md_steps=10, finetune_steps=2, scf_molecules=1, root=Path(__file__).resolve().parent.parent)
    assert list(workdir.iterdir()) == []
    report = (out / "report.md").read_text()
    titles = [s.title for s in sections]
    assert len(titles) == 5 and all(f"## {t}" in report for t in titles)
    for entry in load_manifest().models:
        assert f"`{entry.name}` ({entry.family}" in report
    families = {entry.family for entry in load_manifest().models}
    figures = {"hamiltonian": "scf_cycles.png", "force-field": "force_field.png",
               "consistency": "consistency_structures.png", "property": "finetune_learning_curve.png"}
    for family, figure in figures.items():
        if family in families:
            assert (out / figure).is_file() and f"]({figure})" in report, figure
    if "hamiltonian" in families:
        assert "SCF cycles from the model's density" in report
    if "force-field" in families:
        assert "MD steps/s" in report and "forces on" in report
    if "consistency" in families:
        assert "best of" in report
        assert not re.search(r":\d+\]", report)  # SMILES as people write them, not atom-mapped
    assert "before," in report and "after 2 steps" in report
    assert (out / "finetune" / "pretrained" / "model.safetensors").is_file()


def test_a_section_is_announced_when_it_starts_and_timed_when_it_ends(tmp_path, capsys):
    def part(section, out):
        print("working")
        section.lines.append("done")

    section = _run_section("A slow part", part, tmp_path)
    assert capsys.readouterr().out.split("\n")[1:5] == ["## A slow part", "working", "- done",
                                                         f"({section.seconds:.1f} s)"]


def test_mapped_smiles_are_reported_plain():
    assert _plain_smiles("[C:1]([C:2]#[N:3])([H:4])([H:5])[H:6]") == "CC#N"
