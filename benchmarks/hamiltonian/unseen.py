"""SCF cycles saved on drug-like molecules the project never generated, as a new user measures them.

The molecules (``DRUG_LIKE``: 15–24 atoms, H/C/N/O, 10–13 heavy atoms, so none is in QM9, which
has at most 9; aromatic rings and amides) are built from SMILES and relaxed with GFN2-xTB
(the lowest of 3 RDKit conformers); nothing about them is labelled. Each runs PySCF at the model's
level twice: from MINAO and from ``model_guess(model, mf)`` (the guess's own time counted), and
the table gives cycles and wall time, guess over MINAO.

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
            rows.append({"name": name, "n_atoms": len(atoms), "cycles": int(mf.cycles),
                         "minao_cycles": minao["cycles"], "guess_s": guess_s, "scf_s": time.perf_counter() - tic,
                         "minao_s": minao["time_s"], "converged": bool(mf.converged) and minao["converged"],
                         "energy_difference": abs(float(energy) - minao["energy"])})
            _save(args.json, results)
            print(f"[unseen] {ref}: {name} {rows[-1]['cycles']} cycles (MINAO {rows[-1]['minao_cycles']})", flush=True)
        ratios = [r["cycles"] / r["minao_cycles"] for r in rows]
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
              f"wall {summary['wall_ratio_with_guess']:.2f}x", flush=True)
    return results


def _save(path: Path | None, results: dict) -> None:
    if path is not None:
        from zoo._files import atomic_path

        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
