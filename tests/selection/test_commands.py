import ase.io
import numpy as np
from ase import Atoms

from zoo.cli import main


def write_pool(path, n=12):
    rng = np.random.default_rng(0)
    base = np.array([[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    frames = [Atoms("OH2", positions=base + 0.1 * rng.normal(size=(3, 3))) for _ in range(n)]
    for i, atoms in enumerate(frames):
        atoms.info["pool_index"] = i
    ase.io.write(path, frames, format="extxyz")


def test_select_end_to_end(tmp_path, capsys):
    pool = tmp_path / "pool.extxyz"
    write_pool(pool)
    out, idx, grades = tmp_path / "sel.extxyz", tmp_path / "idx.txt", tmp_path / "grades.txt"
    for method in ("d-optimal", "maxvol", "fps", "random"):
        status = main(["select", str(pool), "-k", "3", "--method", method, "--descriptor", "inverse-distance",
                       "-o", str(out), "--indices-out", str(idx), "--grade-out", str(grades)])
        assert status == 0, capsys.readouterr().err
        indices = [int(line) for line in idx.read_text().split()]
        selected = ase.io.read(out, index=":")
        assert [a.info["pool_index"] for a in selected] == indices and len(set(indices)) == 3
        values = np.loadtxt(grades)
        assert values.shape == (12,)
        # k = d = 3: each selected row is a basis vector, and maxvol's basis dominates the pool
        np.testing.assert_allclose(values[indices], 1.0, atol=1e-8)
        assert method != "maxvol" or values.max() <= 1.05
    assert "3 of 12 structures by random" in capsys.readouterr().out


def test_select_bad_inputs(tmp_path, capsys):
    pool = tmp_path / "pool.extxyz"
    write_pool(pool, n=3)
    assert main(["select", str(pool), "-k", "5", "-o", str(tmp_path / "s.extxyz")]) == 2
    assert "k=5 is larger than the pool of 3" in capsys.readouterr().err
    assert main(["select", str(tmp_path / "missing.extxyz"), "-k", "1", "-o", str(tmp_path / "s.extxyz")]) == 2
    assert "no pool file" in capsys.readouterr().err
    # one structure cannot span 3 features: selected, but no grades
    status = main(["select", str(pool), "-k", "1", "-o", str(tmp_path / "s.extxyz"),
                   "--grade-out", str(tmp_path / "g.txt")])
    assert status == 1 and "at least d=3 rows" in capsys.readouterr().err


def test_select_with_model_features(tmp_path, capsys):
    from zoo.cli import parse_config
    from zoo.registry import instantiate_task, save_pretrained

    config = parse_config(["fit", "--config", "ethanol_forcefield_dens"])["model"]
    config["init_args"]["model"]["init_args"]["backbone"]["init_args"].update(channels=4, num_layers=1)
    card = {"name": "select-test", "family": "force-field", "license": "mit", "description": "test",
            "units": {"positions": "Å", "energy": "eV", "forces": "eV/Å"}}
    folder = save_pretrained(instantiate_task(config), tmp_path / "model", card)
    pool = tmp_path / "pool.extxyz"
    write_pool(pool)
    out = tmp_path / "sel.extxyz"
    assert main(["select", str(pool), "-k", "5", "--model", str(folder), "-o", str(out)]) == 0
    assert "5 of 12 structures by d-optimal on 4 features (model" in capsys.readouterr().out
    assert len(ase.io.read(out, index=":")) == 5
