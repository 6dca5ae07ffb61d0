"""The Hamiltonian family's ``predict``: from a predicted Kohn–Sham matrix to overlap, orbitals and density.

:class:`HamiltonianPredictor` is the inference half of :class:`~zoo.models.HamiltonianModel`
(which mixes it in): the model predicts H in PySCF AO order for a batch of molecules, and each
molecule's H is solved with PySCF's overlap, ``H C = S C ε``, for its orbitals and closed-shell
density. Everything is in Hartree, the unit of the matrices (1 Hartree = 27.211386 eV).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from zoo.data import AtomicData, keys
from zoo.models._inference import BATCH_SIZE, Predictor, StructureInput, as_structures, predict_structures

#: What :meth:`HamiltonianPredictor.predict` returns, and the unit of each.
ORBITAL_UNITS = {
    "hamiltonian": "Hartree",           # [n_ao, n_ao], PySCF AO order
    "overlap": "dimensionless",         # [n_ao, n_ao]
    "orbital_energies": "Hartree",      # [n_mo], ascending
    "coefficients": "dimensionless",    # [n_ao, n_mo], columns, C^T S C = 1
    "density_matrix": "dimensionless",  # [n_ao, n_ao], electrons: trace(D S) = n_electrons
    "homo": "Hartree",
    "lumo": "Hartree",
    "gap": "Hartree",
}


class HamiltonianPredictor(Predictor):
    """``predict`` for a Hamiltonian model, whose ``level`` (a :class:`~zoo.qc.LevelOfTheory`),
    ``base``, ``remember_base`` and forward give H. It has no potential energy, hence no ASE calculator.
    """

    @property
    def prediction_units(self) -> dict[str, str]:
        """:data:`ORBITAL_UNITS`: the matrices, orbitals and frontier-orbital energies of :meth:`predict`."""
        return dict(ORBITAL_UNITS)

    def predict(self, structures, batch_size: int = BATCH_SIZE, lindep: float | None = None,
                base: np.ndarray | None = None):
        """H, S, orbitals and density of a molecule (or of each of a list), ``batch_size`` per forward pass.

        Args:
            structures: an :class:`ase.Atoms` or ``(atomic numbers, positions Å)``, or a list of
                them; an ``Atoms`` may carry ``info["charge"]`` and ``info["spin"]`` (2S), which
                must be the model's (a model predicts one charge and spin state).
            batch_size: molecules per forward pass of the network.
            lindep: solve ``H C = S C ε`` without the eigen-directions of S below this value
                (canonical orthogonalisation). Near-null directions of S turn a small error of H
                into deep spurious orbitals; dropping them keeps the guess's occupied space
                physical. ``None`` keeps every direction.
            base: for one molecule, the model's base Hamiltonian of it if the caller already has
                it (:func:`zoo.interfaces.model_guess` builds it on the user's own SCF object, whose
                grids the SCF then reuses); computed here otherwise.

        Returns:
            Per molecule, NumPy float64 arrays in PySCF AO order, Hartree: ``hamiltonian``,
            ``overlap`` (dimensionless), ``orbital_energies``, ``coefficients`` (columns; fewer
            than the AOs with ``lindep``), ``density_matrix`` (closed shell, a ready ``dm0`` for
            PySCF), and floats ``homo``, ``lumo``, ``gap`` (Hartree). A dict for one molecule, a
            list of dicts for a list.

        Warns (:class:`~zoo.models.ExtrapolationWarning`) when a molecule is outside the
        training domain: an atom pair closer than the training data's, or far more atoms.
        """
        if base is not None:
            images, single = as_structures(structures)
            if not single:
                raise ValueError("base= is the base Hamiltonian of one molecule: give one structure")
            self.remember_base(images[0].numbers, images[0].positions, base)
        return predict_structures(self, structures, batch_size,
                                  finish=functools.partial(self.structure_results, lindep=lindep))

    def structure_input(self, atoms) -> StructureInput:
        """The molecule as the model's input, with its PySCF molecule at the model's level of theory.

        Raises:
            ValueError: a charge or spin (``atoms.info``) other than the model's, atoms closer than
                any chemical bond, an element the basis lacks, or an odd number of electrons.
        """
        charge, spin = int(atoms.info.get("charge", 0)), int(atoms.info.get("spin", 0))
        if (charge, spin) != (self.level.charge, self.level.spin):
            raise ValueError(
                f"the molecule has charge {charge} and spin {spin} (atoms.info), but this model predicts "
                f"charge {self.level.charge}, spin {self.level.spin} only ({self.level.describe()}); "
                "use a model trained for that state"
            )
        positions = np.asarray(atoms.positions, dtype=np.float64)
        # user input: refuse atoms closer than any chemical bond, naming them
        data = AtomicData.from_arrays(atoms.numbers, positions, dtype=next(self.parameters()).dtype,
                                      check_distances=True)
        return StructureInput(data, self.level.build_mole(atoms.numbers, positions))

    def structure_results(self, outputs: dict[str, torch.Tensor], batch, inputs: Sequence[StructureInput],
                          lindep: float | None = None) -> list[dict[str, Any]]:
        """Each molecule's H (from the flattened, concatenated output) solved for its orbitals."""
        flat = outputs[keys.HAMILTONIAN].detach().double().cpu()
        results, start = [], 0
        for item in inputs:
            mol = item.context
            n_ao = mol.nao
            results.append(orbitals(flat[start:start + n_ao * n_ao].reshape(n_ao, n_ao), mol, lindep))
            start += n_ao * n_ao
        return results


def orbitals(hamiltonian: torch.Tensor, mol, lindep: float | None = None) -> dict[str, Any]:
    """:data:`ORBITAL_UNITS` of a closed-shell PySCF molecule ``mol`` from its H [n_ao, n_ao] (float64, Hartree)."""
    from zoo.qc.eigh import generalized_eigh

    overlap = mol.intor("int1e_ovlp")
    energies, coefficients = generalized_eigh(hamiltonian, torch.from_numpy(overlap), lindep=lindep)
    energies, coefficients = energies.numpy(), coefficients.numpy()
    n_occ = mol.nelectron // 2
    occupied = coefficients[:, :n_occ]
    homo = float(energies[n_occ - 1])
    lumo = float(energies[n_occ]) if n_occ < len(energies) else float("nan")
    return {
        "hamiltonian": hamiltonian.numpy(), "overlap": overlap, "orbital_energies": energies,
        "coefficients": coefficients, "density_matrix": 2.0 * occupied @ occupied.T,
        "homo": homo, "lumo": lumo, "gap": lumo - homo,
    }
