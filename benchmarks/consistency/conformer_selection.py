"""Does the consistency model's learned B3LYP energy choose conformers better than MMFF94 does?

Refinement starts from 5 of 30 ETKDG+MMFF94 conformers (``zoo.models._molecules.diverse_conformers``:
farthest-point sampling on heavy-atom RMSD from the lowest-MMFF one). Best of 5 against QM9's
geometry is limited by which conformers are picked: the best of all 30 is far closer. This
measures whether an energy model picks better, with no structure changed: for each molecule, the
30 conformers' RMSD to QM9 (symmetry-aware), their MMFF94 energies, every model's energy and the
heavy-atom RMSD between them are recorded (``dump``), then selection rules of 5 are scored under each
energy (``table``):

- ``diverse``: farthest-point sampling from the lowest-energy conformer;
- ``cluster``: the 30 split among the 5 diverse-from-lowest-MMFF conformers (nearest one), the
  lowest-energy conformer of each part;
- ``lowest, 0.25 Å apart``: the lowest-energy conformers, skipping any within 0.25 Å of one chosen;
- ``lowest 5``: the five lowest-energy conformers;
- and ``top 1``, the mean RMSD of the lowest-energy conformer alone.

Rules are compared on validation molecules (QM9 molecules of the cheap training data, whose
energies no model was trained on, 12 atoms or more, 200 drawn with seed 0) before the test
molecules; two conformer pools (seeds) on the test molecules show the spread.

    python benchmarks/consistency/conformer_selection.py dump --set validation --pool-seed 0 \\
        --models runs/consistency_refiner/version_0/checkpoints/best.ckpt consistency-qm9-b3lyp-631gs
    python benchmarks/consistency/conformer_selection.py dump --set test --pool-seed 0 --models ...
    python benchmarks/consistency/conformer_selection.py dump --set test --pool-seed 1000 --models ...
    python benchmarks/consistency/conformer_selection.py table
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RESULTS = HERE / "results" / "conformer_selection"
SETS = {"validation": ROOT / "data" / "consistency" / "qm9_xtb_reference.extxyz",
        "test": ROOT / "data" / "consistency" / "qm9_test.extxyz"}
POOL, K = 30, 5


def molecules(name: str, n: int) -> list:
    import ase.io

    references = ase.io.read(SETS[name], index=":")
    if name == "validation":
        references = [a for a in references if len(a) >= 12]
        chosen = np.random.default_rng(0).choice(len(references), n, replace=False)
        references = [references[i] for i in sorted(chosen)]
    return references[:n]


def conformer_pool(smiles: str, seed: int) -> tuple[list[np.ndarray], list[float], np.ndarray]:
    """``POOL`` ETKDG conformers relaxed with MMFF94: positions, MMFF energies (kcal/mol), and the
    heavy-atom RMSD matrix (Å)."""
    from rdkit import Chem
    from rdkit.Chem import AllChem, rdDistGeom, rdForceFieldHelpers

    from zoo.data.molgraph import mol_from_smiles

    mol = mol_from_smiles(smiles)
    params = rdDistGeom.ETKDGv3()
    params.randomSeed = seed + 1
    ids = list(rdDistGeom.EmbedMultipleConfs(mol, POOL, params))
    energies = [energy for _, energy in rdForceFieldHelpers.MMFFOptimizeMoleculeConfs(mol, maxIters=2000)]
    distance = np.zeros((len(ids), len(ids)))
    if len(ids) > 1:
        distance[np.tril_indices(len(ids), -1)] = AllChem.GetConformerRMSMatrix(Chem.RemoveHs(mol), prealigned=False)
        distance += distance.T
    return [mol.GetConformer(i).GetPositions() for i in ids], energies, distance


def dump(args) -> None:
    import torch
    from study import load_model, report_name
    from torch_geometric.data import Batch

    from zoo.metrics import best_rmsd

    torch.set_num_threads(1)
    models = {report_name(ref, None): load_model(ref) for ref in args.models}
    out = RESULTS / f"{args.set}_pool{args.pool_seed}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    rows, started = [], time.time()
    references = molecules(args.set, args.n)
    for j, reference in enumerate(references):
        smiles = reference.info["smiles"]
        conformers, mmff, distance = conformer_pool(smiles, args.pool_seed + 5 * j)
        row = {"qm9_id": int(reference.info["qm9_id"]), "n_atoms": len(reference),
               "rmsd": [best_rmsd(c, reference.positions, smiles) for c in conformers],
               "energy": {"MMFF94": mmff}, "distance": distance.round(4).tolist()}
        for name, model in models.items():
            batch = Batch.from_data_list([model.graph_data(smiles, c) for c in conformers])
            with torch.no_grad():
                row["energy"][name] = model(batch, forces=False)["energy"].double().tolist()
        rows.append(row)
        if (j + 1) % 20 == 0 or j + 1 == len(references):
            print(f"[conformer selection] {args.set} pool {args.pool_seed}: {j + 1}/{len(references)} molecules, "
                  f"{time.time() - started:.0f} s", flush=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps({"models": args.models, "rows": rows}))
    tmp.replace(out)


def _diverse(start: int, distance: np.ndarray, k: int = K) -> list[int]:
    chosen = [start]
    while len(chosen) < min(k, len(distance)):
        chosen.append(int(np.argmax(distance[:, chosen].min(axis=1))))
    return chosen


def selections(energy: np.ndarray, mmff: np.ndarray, distance: np.ndarray) -> dict[str, list[int]]:
    """The conformers each rule picks under ``energy``."""
    order = np.argsort(energy)
    centres = _diverse(int(np.argmin(mmff)), distance)
    part = np.argmin(distance[:, centres], axis=1)
    for c, i in enumerate(centres):
        part[i] = c
    apart = []
    for i in order:
        if all(distance[i, j] > 0.25 for j in apart):
            apart.append(int(i))
    apart = apart[:K]
    while len(apart) < min(K, len(distance)):
        apart.append(int(np.argmax(distance[:, apart].min(axis=1))))
    return {"diverse": _diverse(int(order[0]), distance),
            "cluster": [int(min(np.where(part == c)[0], key=lambda i: energy[i])) for c in sorted(set(part))],
            "lowest, 0.25 Å apart": apart, "lowest 5": [int(i) for i in order[:K]], "top 1": [int(order[0])]}


def table(args) -> None:
    lines = ["# Conformer selection by energy: MMFF94 against the consistency models' learned B3LYP energy", "",
             "Best-of-5 RMSD (Å) to QM9's geometry of 5 conformers chosen from 30 ETKDG+MMFF94 ones (`top 1`: "
             "the lowest-energy one alone). `python benchmarks/consistency/conformer_selection.py` (its "
             "docstring has the commands).", ""]
    for path in sorted(RESULTS.glob("*_pool*.json"), key=lambda p: (p.stem.split("_")[0] != "validation", p.stem)):
        rows = json.loads(path.read_text())["rows"]
        names = list(rows[0]["energy"])
        rules = list(selections(np.zeros(2), np.zeros(2), np.zeros((2, 2))))
        lines += [f"## {path.stem.replace('_pool', ', conformer pool seed ')} ({len(rows)} molecules)", "",
                  f"Every conformer: mean {np.mean([np.mean(r['rmsd']) for r in rows]):.3f}; best of 30 (oracle) "
                  f"{np.mean([min(r['rmsd']) for r in rows]):.3f}.", "",
                  "| energy | " + " | ".join(rules) + " |", "|---|" + "---|" * len(rules)]
        for name in names:
            scores = {rule: [] for rule in rules}
            for r in rows:
                rmsd, distance = np.array(r["rmsd"]), np.array(r["distance"])
                picks = selections(np.array(r["energy"][name]), np.array(r["energy"]["MMFF94"]), distance)
                for rule, chosen in picks.items():
                    scores[rule].append(rmsd[chosen].min())
            lines.append(f"| {name} | " + " | ".join(f"{np.mean(scores[rule]):.3f}" for rule in rules) + " |")
        lines.append("")
    (RESULTS.parent / "conformer_selection.md").write_text("\n".join(lines))
    print("\n".join(lines))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("dump", help="the conformer pools and their energies under each model")
    run.add_argument("--set", choices=sorted(SETS), required=True)
    run.add_argument("--n", type=int, default=200)
    run.add_argument("--pool-seed", type=int, default=0)
    run.add_argument("--models", nargs="+", required=True, help="zoo.load names, run folders or checkpoints")
    sub.add_parser("table", help="the selection rules scored from the dumps")
    args = parser.parse_args(argv)
    dump(args) if args.command == "dump" else table(args)


if __name__ == "__main__":
    main()
