"""SCF cycles saved on drug-like molecules the project never generated, as a new user measures them.

The molecules (``DRUG_LIKE``: 15–24 atoms, H/C/N/O, 10–13 heavy atoms, so none is in QM9, which
has at most 9; aromatic rings and amides) are built from SMILES and relaxed with GFN2-xTB
(the lowest of 3 RDKit conformers); nothing about them is labelled. Each runs PySCF at the model's
level twice: from MINAO and from ``model_guess(model, mf)`` (the guess's own time counted), and
the table gives cycles and wall time, guess over MINAO. The converged SCF is also the label: the
model's H is compared with its Fock matrix, and the model's orbital energies with its (µEh).

    OMP_NUM_THREADS=1 python benchmarks/hamiltonian/unseen.py --model hamiltonian-qm9-sct-b3lyp5-def2svp \\
        --model runs/qm9_occupied/pretrained --json benchmarks/hamiltonian/results/unseen.json

The MINAO runs are shared by every model; ``--molecules N`` takes the first N. Each SCF is recorded
in ``--json`` as it ends and a rerun skips what is recorded, so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

#: name -> SMILES: common drug-like molecules, each with more heavy atoms than any QM9 molecule.
DRUG_LIKE = {
    "paracetamol": "CC(=O)Nc1ccc(O)cc1",
    "aspirin": "CC(=O)Oc1ccccc1C(=O)O",
    "acetanilide": "CC(=O)Nc1ccccc1",
    "methyl salicylate": "COC(=O)c1ccccc1O",
    "isoniazid": "NNC(=O)c1ccncc1",
    "4-aminobenzoic acid": "Nc1ccc(cc1)C(=O)O",
    "salicylic acid": "OC(=O)c1ccccc1O",
    "phenacetin": "CCOc1ccc(NC(C)=O)cc1",
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", required=True, help="registry name or folder (repeatable)")
    parser.add_argument("--molecules", type=int, default=len(DRUG_LIKE), help="the first N molecules")
    parser.add_argument("--json", type=Path, help="write the figures here")
    return parser.parse_args(argv)


def structures(n: int) -> list:
    from zoo.datagen.sampling import lowest_xtb_conformer

    built = []
    for name, smiles in list(DRUG_LIKE.items())[:n]:
        atoms = lowest_xtb_conformer(smiles, n_conformers=3, seed=0)
        atoms.info["name"] = name
        built.append(atoms)
    return built


def main(argv=None) -> dict:
    import zoo
    from zoo.interfaces import model_guess
    from zoo.qc.guess import scf_cycles

    args = parse_args(argv)
    molecules = structures(args.molecules)
    # resumable: every SCF is recorded as it ends, and a rerun skips what is recorded
    results = json.loads(args.json.read_text()) if args.json is not None and args.json.is_file() else {}
    results.setdefault("minao", {})
    results.setdefault("models", {})
    for ref in args.model:
        task = zoo.load(ref, dtype="float64")
        level = task.model.level
        rows = results["models"].setdefault(ref, {"rows": []})["rows"]
        for atoms in molecules:
            name = atoms.info["name"]
            if any(r["name"] == name for r in rows):
                continue
            mol = level.build_mole(atoms.numbers, atoms.positions)
            if name not in results["minao"]:
                results["minao"][name] = scf_cycles(mol, level)
                _save(args.json, results)
            minao = results["minao"][name]
            mf = level.build_scf(mol)
            tic = time.perf_counter()
            dm0 = model_guess(task, mf)
            guess_s = time.perf_counter() - tic
            tic = time.perf_counter()
            energy = mf.kernel(dm0=dm0)
            scf_s = time.perf_counter() - tic
            rows.append({"name": name, "n_atoms": len(atoms), "cycles": int(mf.cycles),
                         "minao_cycles": minao["cycles"], "guess_s": guess_s, "scf_s": scf_s,
                         "minao_s": minao["time_s"], "converged": bool(mf.converged) and minao["converged"],
                         "energy_difference": abs(float(energy) - minao["energy"]),
                         **errors_against_scf(task, mf)})
            _save(args.json, results)
            print(f"[unseen] {ref}: {name} {rows[-1]['cycles']} cycles (MINAO {rows[-1]['minao_cycles']})", flush=True)
        ratios = [r["cycles"] / r["minao_cycles"] for r in rows]
        labelled = [r for r in rows if "hamiltonian_mae" in r]
        results["models"][ref].update(
            {f"{key}_mean": statistics.mean(r[key] for r in labelled) for key in ERRORS if labelled})
        results["models"][ref].update(
            scf_cycle_ratio=sum(r["cycles"] for r in rows) / sum(r["minao_cycles"] for r in rows),
            scf_cycle_ratio_range=[min(ratios), max(ratios)],
            wall_ratio_with_guess=sum(r["guess_s"] + r["scf_s"] for r in rows) / sum(r["minao_s"] for r in rows),
            all_converged=all(r["converged"] for r in rows),
            max_energy_difference=max(r["energy_difference"] for r in rows))
        _save(args.json, results)
        summary = results["models"][ref]
        print(f"[unseen] {ref}: cycles {summary['scf_cycle_ratio']:.3f}x MINAO "
              f"({statistics.mean(r['cycles'] for r in rows):.1f} vs "
              f"{statistics.mean(r['minao_cycles'] for r in rows):.1f}) on {len(rows)} molecules, "
              f"wall {summary['wall_ratio_with_guess']:.2f}x"
              + (f", H MAE {summary['hamiltonian_mae_mean']:.0f} µEh" if "hamiltonian_mae_mean" in summary else ""),
              flush=True)
    return results


#: What :func:`errors_against_scf` measures, µEh.
ERRORS = ("hamiltonian_mae", "occupied_orbital_energy_mae", "homo_error", "lumo_error", "gap_error")


def errors_against_scf(task, mf) -> dict:
    """The model's H and orbital energies against the converged SCF ``mf`` of the same molecule, µEh
    (H against the Fock matrix of the converged density; the model's base Hamiltonian of this
    geometry is remembered from its guess, so this costs no Fock build)."""
    import numpy as np

    predicted = task.model.predict((mf.mol.atom_charges(), mf.mol.atom_coords(unit="Angstrom")))
    reference = np.asarray(mf.get_fock(dm=mf.make_rdm1()))
    n_occ = mf.mol.nelectron // 2
    eps, ref = predicted["orbital_energies"], np.asarray(mf.mo_energy)
    homo, lumo = abs(eps[n_occ - 1] - ref[n_occ - 1]), abs(eps[n_occ] - ref[n_occ])
    gap = abs((eps[n_occ] - eps[n_occ - 1]) - (ref[n_occ] - ref[n_occ - 1]))
    return {key: 1e6 * float(value) for key, value in zip(ERRORS, (
        np.abs(predicted["hamiltonian"] - reference).mean(), np.abs(eps[:n_occ] - ref[:n_occ]).mean(),
        homo, lumo, gap))}


def _save(path: Path | None, results: dict) -> None:
    if path is not None:
        from zoo._files import atomic_path

        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
