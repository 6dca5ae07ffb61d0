"""`zoo list` and `zoo info`: finding a model, and reading its card with every metric's unit."""

import copy

import pytest

import zoo
from zoo.registry import load_manifest, metric_unit, parse_manifest
from zoo.registry.commands import info_main, list_main

PUBLISHED = load_manifest()


def _table(out: str) -> list[list[str]]:
    """The rows of `zoo list`, split at the two-space column gaps."""
    table = out.split("\n\n")[0]  # superseded models are named below the table
    return [[cell.strip() for cell in line.split("  ") if cell.strip()] for line in table.splitlines()]


def test_list_shows_what_tells_models_apart(capsys):
    assert list_main([]) == 0
    out = capsys.readouterr().out
    rows = _table(out)
    assert rows[0] == ["name", "family", "test metric", "size", "elements", "level of theory"]
    by_name = {row[0]: row for row in rows[1:]}
    assert sorted(by_name) == PUBLISHED.names()
    assert by_name["hamiltonian-water-b3lyp5-def2svp"][1:] == [
        "hamiltonian", "hamiltonian_mae_all 353.1 µEh", "2.0 MB", "H,O", "b3lyp5/def2-svp"]
    assert by_name["ethanol-dens-pbe-def2svp"][2] == "forces_mae 0.04247 eV/Å"
    assert by_name["qm9-u0-demo"][2:4] == ["U0_mae 0.1395 eV", "453 kB"]
    assert by_name["qm9-u0-demo"][-1].startswith("QM9 (Ramakrishnan et al. 2014), B3LYP/6-31G(2df,p)")
    assert "hamiltonian-water-b3lyp5-def2svp is superseded by hamiltonian-water-b3lyp5-def2svp-v2" in out


@pytest.mark.parametrize("argv, family, pattern", [
    (["--family", "force-field"], "force-field", None),
    (["hamiltonian-*"], None, "hamiltonian-*"),
    (["*water*", "qm9-u0-?emo"], None, ["*water*", "qm9-u0-?emo"]),
    (["--family", "property", "*-mpnn"], "property", "*-mpnn"),
])
def test_list_filters_like_list_models(capsys, argv, family, pattern):
    assert list_main(argv) == 0
    listed = [row[0] for row in _table(capsys.readouterr().out)[1:]]
    assert listed and listed == zoo.list_models(family=family, pattern=pattern)
    assert {PUBLISHED.get(name).family for name in listed} <= {family} if family else len(listed) >= 2


def test_list_says_when_nothing_matches(capsys):
    assert list_main(["hamiltonian-*", "--family", "force-field"]) == 1
    assert "no published model matches 'hamiltonian-*' --family force-field" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse names the families
        list_main(["--family", "forcefield"])
    assert "invalid choice: 'forcefield'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown model family 'forcefield'; the families are property, force-field"):
        zoo.list_models(family="forcefield")


def test_info_is_the_card_as_text(registry, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the package copy, without asking a Hub
    where = ["--manifest", str(registry.root / "checkpoints.json"), "--hub-dir", str(registry.package)]
    assert info_main(["tiny-ho", *where]) == 0
    text = capsys.readouterr()
    entry = registry.entries["tiny-ho"]
    assert text.err == ""
    for line in ["tiny-ho: a property model", "  A tiny model for the tests.",
                 "  level of theory  RKS b3lyp5/def2-svp grid 1", "  training data    water-test, 8 structures",
                 "  recipe           recipes/tiny.yaml", "  license          mit",
                 f"  Hub              zoo-test/tiny-ho@{entry['revision']}",
                 "test metrics, on test: 4 random structures", "  energy_mae  0.25 eV",
                 '  Python:     model = zoo.load("tiny-ho")',
                 "  fine-tune:  zoo fit --config recipes/tiny.yaml --model.pretrained tiny-ho"]:
        assert line in text.out.splitlines()
    assert "---" not in text.out and "model-index" not in text.out
    # the card as published
    assert info_main(["tiny-ho", "--raw", *where]) == 0
    raw = capsys.readouterr().out
    assert raw.startswith("---\n") and "library_name: zoo" in raw and "# tiny-ho" in raw


def test_info_of_a_folder(registry, capsys):
    folder = registry.served / "tiny-remote"
    assert info_main([str(folder)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("tiny-remote: a property model") and f'zoo.load("{folder}")' in out
    assert "Hub" not in out  # not published: no repo to name


@pytest.mark.parametrize("entry", PUBLISHED.models, ids=PUBLISHED.names())
def test_every_published_error_metric_has_a_unit(entry):
    """Losses are weighted sums and the orbital cosine a fraction; every other metric has a unit."""
    for metric in entry.metrics["values"]:
        unitless = "loss" in metric or metric == "orbital_cosine"
        assert (metric_unit(entry, metric) is None) == unitless, metric


def test_units_come_from_the_card_then_the_family_never_a_guess(registry):
    data = copy.deepcopy(registry.data)
    model = data["models"][0]
    model["units"] = {"positions": "Å", "energy": "kcal/mol", "gap": "eV"}
    model["metrics"]["values"] = {"energy_mae": 1.0, "energy_per_atom_rmse": 1.0, "gap_mae": 1.0,
                                  "dipole_mae": 1.0, "homo_error": 1.0}
    entry = parse_manifest(data).models[0]
    assert {m: metric_unit(entry, m) for m in model["metrics"]["values"]} == {
        "energy_mae": "kcal/mol", "energy_per_atom_rmse": "kcal/mol/atom", "gap_mae": "eV",
        "dipole_mae": None,  # no unit in the card: none printed
        "homo_error": None,  # µEh only where the Hamiltonian family computes it
    }
    hamiltonian = PUBLISHED.get("hamiltonian-water-b3lyp5-def2svp")
    assert [metric_unit(hamiltonian, m) for m in ("homo_error", "hamiltonian_mae", "orbital_cosine")] == [
        "µEh", "Hartree", None]
