"""Evaluate a trained Hamiltonian model on labelled test structures, SCF acceleration included.

Reads a model (a folder written by ``zoo test``, or a registry name) and a labelled Hamiltonian
file, optionally restricted to the test set of a saved split, then reports: H MAE (all / on-site /
off-site, µEh), occupied orbital-energy MAE, orbital cosine similarity, HOMO/LUMO/gap errors, and
PySCF SCF cycles and wall time started from the model's density versus PySCF's MINAO guess.

Study 5(i), water (the test frames of the run's split):

    OMP_NUM_THREADS=1 python benchmarks/hamiltonian/evaluate.py \\
        --model runs/hamiltonian_water/pretrained --split runs/hamiltonian_water/version_0/split.npz \\
        --json benchmarks/hamiltonian/results/water_supervised.json

Study 5(ii), the QM9-derived out-of-distribution test molecules (the whole file):

    OMP_NUM_THREADS=1 python benchmarks/hamiltonian/evaluate.py --model runs/hamiltonian_qm9/pretrained \\
        --model runs/hamiltonian_qm9_control/pretrained --model runs/hamiltonian_qm9_sct/pretrained \\
        --data data/qm9_hamiltonian/large_test_b3lyp5_def2svp.h5 --scf 16 --json benchmarks/hamiltonian/results/qm9_ood.json

The SCF runs are the slow part (minutes a molecule). With ``--json``, each is kept in
``<json>.partial`` as it finishes, and an evaluation interrupted (a session's end) and started
again with the same arguments goes on from there; the file goes when the result is written.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from zoo._files import atomic_path, exclusive_output
from zoo.data import keys, read_hamiltonian_h5
from zoo.data.splits import load_split
from zoo.metrics import hamiltonian_mae, onsite_mask, orbital_metrics
from zoo.interfaces import model_guess
from zoo.qc.guess import base_hamiltonian, density_from_hamiltonian, scf_cycles
from zoo.qc.level import LevelOfTheory

DATA = Path(__file__).resolve().parents[2] / "data" / "water" / "water_b3lyp5_def2svp.h5"


class BaseGuess:
    """A physical base Hamiltonian used as a guess on its own (``--model base:minao_fock``): the
    floor a model that learns a correction to it must beat."""

    def __init__(self, kind: str, level: LevelOfTheory):
        self.base, self.level = kind, level

    def predict(self, atoms, lindep: float | None = None, base=None) -> dict:
        z, pos = atoms
        mol = self.level.build_mole(z, pos)
        hamiltonian = base_hamiltonian(self.base, z, pos, self.level) if base is None else base
        overlap = mol.intor("int1e_ovlp")
        return {"hamiltonian": hamiltonian, "overlap": overlap,
                "density_matrix": density_from_hamiltonian(hamiltonian, overlap, mol.nelectron, lindep=lindep)}


class SCFRuns:
    """The SCF runs of an evaluation by structure: from MINAO (shared by every model) and from each
    model's guess, kept in ``path`` (if given) as each one finishes.

    Started again with the same settings, an evaluation takes the runs already in ``path``
    instead of repeating them; a model's runs count only for the same weights (a fingerprint of
    its parameters). Other settings than those in ``path`` are refused, naming both.
    """

    def __init__(self, path: Path | None, settings: dict):
        self.path, self.settings = path, settings
        self.runs: dict = {"minao": {}, "models": {}}
        if path is not None and path.is_file():
            saved = json.loads(path.read_text())
            if saved["settings"] != settings:
                raise SystemExit(f"evaluate.py: {path} holds the SCF runs of an evaluation with other settings "
                                 f"({saved['settings']}, not {settings}); remove it to start again")
            self.runs = saved["runs"]
            done = len(self.runs["minao"]) + sum(map(len, self.runs["models"].values()))
            print(f"[evaluate] going on from {path}: {done} SCF runs done before", file=sys.stderr, flush=True)

    def minao(self, index: int, run) -> dict:
        return self._get(self.runs["minao"], index, run)

    def model(self, fingerprint: str, index: int, run) -> dict:
        return self._get(self.runs["models"].setdefault(fingerprint, {}), index, run)

    def _get(self, done: dict, index: int, run) -> dict:
        if str(index) not in done:
            done[str(index)] = run()
            if self.path is not None:
                with atomic_path(self.path) as tmp:
                    tmp.write_text(json.dumps({"settings": self.settings, "runs": self.runs}))
        return done[str(index)]

    def finish(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)


def fingerprint(ref: str, model) -> str:
    """``ref`` and a hash of the model's parameters: the same name with other weights is another model."""
    digest = hashlib.sha256(ref.encode())
    if isinstance(model, torch.nn.Module):
        for name, tensor in sorted(model.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return f"{ref} {digest.hexdigest()[:16]}"


def scf_from_guess(model, z, pos, lindep: float | None, base_grid_level: int | None) -> dict:
    """The SCF as a user runs it, ``mf.kernel(dm0=model_guess(model, mf))`` on one SCF object; the
    guess's own cost (model inference, base Hamiltonian and the grids it builds for the SCF) apart."""
    mf = model.level.build_scf(model.level.build_mole(z, pos))
    tic = time.perf_counter()
    dm0 = model_guess(model, mf, lindep=lindep, base_grid_level=base_grid_level)
    guess_s = time.perf_counter() - tic
    tic = time.perf_counter()
    energy = mf.kernel(dm0=dm0)
    return {"guess_s": guess_s, "cycles": int(mf.cycles), "time_s": time.perf_counter() - tic,
            "converged": bool(mf.converged), "energy": float(energy)}


def evaluate(model, dataset, test, n_scf: int, runs: SCFRuns, lindep: float | None = None,
             base_grid_level: int | None = 1, name: str = "model") -> dict:
    """Figures of one model on ``test``; SCF from its density on the first ``n_scf`` structures.

    ``runs`` holds PySCF's runs from the MINAO guess (one per structure, shared by every model)
    and from each model's guess (:func:`scf_from_guess`), whose rows record the guess's own cost,
    so the wall-time ratio is what a user waits: (guess + SCF from it) / SCF from MINAO.
    """
    predictions, targets, overlaps, masks, n_occ, rows = [], [], [], [], [], []
    start = time.perf_counter()
    key = fingerprint(name, model)
    for k, index in enumerate(test.tolist()):
        data = dataset[index]
        z, pos = data[keys.ATOMIC_NUMBERS].numpy(), data[keys.POSITIONS].numpy()
        scf = minao = None
        if k < n_scf:
            minao = runs.minao(index, lambda: scf_cycles(model.level.build_mole(z, pos), model.level))
            scf = runs.model(key, index, lambda: scf_from_guess(model, z, pos, lindep, base_grid_level))
        # the errors of predict with its own base (the model's grid), not the guess's coarse-grid one
        # left in the model's cache: the same figures whether or not this structure's SCF ran now
        base = None if getattr(model, "base", None) is None else base_hamiltonian(model.base, z, pos, model.level)
        out = model.predict((z, pos), lindep=lindep, base=base)
        n = out["hamiltonian"].shape[0]
        predictions.append(torch.as_tensor(out["hamiltonian"]).double())  # a float32 model's too
        targets.append(data[keys.HAMILTONIAN].reshape(n, n))
        overlaps.append(data[keys.OVERLAP].reshape(n, n))
        masks.append(onsite_mask(z, model.level.basis))
        n_occ.append(int(data[keys.N_ELECTRONS]) // 2)
        row = {"index": index, "n_atoms": len(z), "n_ao": n,
               "hamiltonian_mae": float((predictions[-1] - targets[-1]).abs().mean()) * 1e6}
        if scf is not None:
            row.update(guess_s=scf["guess_s"], cycles=scf["cycles"], scf_s=scf["time_s"], converged=scf["converged"],
                       energy_difference=abs(scf["energy"] - minao["energy"]),
                       minao_cycles=minao["cycles"], minao_s=minao["time_s"], minao_converged=minao["converged"])
        rows.append(row)
        print(f"[evaluate] {k + 1}/{len(test)}: H MAE {row['hamiltonian_mae']:.0f} µEh"
              + (f", SCF {row['cycles']} cycles (MINAO {row['minao_cycles']})" if scf is not None else "")
              + f", {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    seconds = time.perf_counter() - start
    h = hamiltonian_mae(predictions, targets, masks)
    result = {"test_frames": len(test), "hamiltonian_mae_all": h["all"], "hamiltonian_mae_diagonal": h["diagonal"],
              "hamiltonian_mae_off_diagonal": h["off_diagonal"],
              **orbital_metrics(predictions, targets, overlaps, n_occ), "wall_s_predict_and_scf": seconds}
    scf = [r for r in rows if "cycles" in r]
    if scf:
        cycle_ratios = [r["cycles"] / max(r["minao_cycles"], 1) for r in scf]
        time_ratios = [(r["guess_s"] + r["scf_s"]) / r["minao_s"] for r in scf]
        extra_cycles = [r["cycles"] - r["minao_cycles"] for r in scf]
        result.update({
            "scf_frames": len(scf),
            "scf_cycles_model_mean": statistics.mean(r["cycles"] for r in scf),
            "scf_cycles_minao_mean": statistics.mean(r["minao_cycles"] for r in scf),
            # total cycles over total: the saving a user sees over many molecules
            "scf_cycle_ratio": sum(r["cycles"] for r in scf) / sum(r["minao_cycles"] for r in scf),
            "scf_cycle_ratio_mean": statistics.mean(cycle_ratios),
            "scf_cycle_ratio_range": [min(cycle_ratios), max(cycle_ratios)],
            "scf_most_extra_cycles": max(extra_cycles),
            "guess_s_mean": statistics.mean(r["guess_s"] for r in scf),
            "scf_time_model_s_mean": statistics.mean(r["scf_s"] for r in scf),
            "scf_time_minao_s_mean": statistics.mean(r["minao_s"] for r in scf),
            "wall_ratio_with_guess": sum(r["guess_s"] + r["scf_s"] for r in scf) / sum(r["minao_s"] for r in scf),
            "wall_ratio_with_guess_range": [min(time_ratios), max(time_ratios)],
            "scf_all_converged": all(r["converged"] and r["minao_converged"] for r in scf),
            "scf_max_energy_difference": max(r["energy_difference"] for r in scf),
        })
    result["molecules"] = rows
    return result


def _load(ref: str, level: LevelOfTheory):
    if ref.startswith("base:"):
        return BaseGuess(ref.removeprefix("base:"), level)
    from zoo.registry import load

    return load(ref).model  # in its own dtype, as a user runs it


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, action="append",
                        help="checkpoint folder (zoo.registry layout), registry name, or base:minao_fock (the base "
                             "Hamiltonian alone); repeat to compare models (the MINAO runs are shared)")
    parser.add_argument("--split", help="split.npz of the training run: evaluate its test set (default: every structure)")
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--scf", type=int, default=50, help="test structures to run SCF on (both guesses), the first ones")
    parser.add_argument("--lindep", type=float, help="drop eigen-directions of S below this from the guess's "
                        "eigenproblem (HamiltonianModel.predict's lindep)")
    parser.add_argument("--base-grid-level", type=int, default=1, help="the PySCF grid level of a base model's F[D_MINAO] "
                        "XC part in the guess where the SCF's is finer (model_guess's base_grid_level, default 1; "
                        "give the SCF's level for its own grid)")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()

    from pyscf import lib

    lib.num_threads(1)
    torch.set_num_threads(1)
    dataset = read_hamiltonian_h5(args.data, dtype=torch.float64)
    metadata = dataset.metadata["hamiltonian"]
    models = {ref: _load(ref, metadata.level) for ref in args.model}
    for model in models.values():
        if hasattr(model, "check_data"):
            model.check_data(metadata)
    test = load_split(args.split, n=len(dataset)).test if args.split else np.arange(len(dataset))
    settings = {"data": args.data, "split": args.split, "lindep": args.lindep, "base_grid_level": args.base_grid_level}
    with contextlib.ExitStack() as stack:
        if args.json:  # one evaluation writes it at a time
            stack.enter_context(exclusive_output(args.json, "evaluation result"))
        runs = SCFRuns(Path(args.json + ".partial") if args.json else None, settings)
        result = {**settings, "models": {ref: evaluate(model, dataset, test, args.scf, runs, args.lindep,
                                                       args.base_grid_level, name=ref)
                                         for ref, model in models.items()}}
        print(json.dumps(result, indent=2))
        if args.json:
            with atomic_path(args.json) as tmp:
                tmp.write_text(json.dumps(result, indent=2) + "\n")
            runs.finish()


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
