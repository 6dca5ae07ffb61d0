"""zoo tour, the README's first command, runs on the published models and writes its report."""

import pytest

from zoo.registry import load_manifest
from zoo.tour import tour

pytestmark = pytest.mark.usefixtures("pyscf_one_thread")


def test_tour_reports_every_family_and_writes_figures(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    sections = tour(tmp_path / "tour", md_steps=10, finetune_steps=2)
    report = (tmp_path / "tour" / "report.md").read_text()
    titles = [s.title for s in sections]
    assert len(titles) == 5 and all(f"## {t}" in report for t in titles)
    for entry in load_manifest().models:
        assert f"`{entry.name}` ({entry.family}" in report
    families = {entry.family for entry in load_manifest().models}
    if "hamiltonian" in families:
        assert "SCF cycles:" in report and (tmp_path / "tour" / "scf_cycles.png").is_file()
    if "force-field" in families:
        assert "MD steps/s" in report and (tmp_path / "tour" / "md_bond_deviation.png").is_file()
    if "consistency" in families:
        assert "best of" in report
    assert "before," in report and "after 2 steps" in report
