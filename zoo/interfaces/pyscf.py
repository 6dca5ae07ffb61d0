"""PySCF's side of zoo: a Hamiltonian model's predicted density as an SCF initial guess.

::

    from pyscf import dft
    from zoo.interfaces import model_guess

    mf = dft.RKS(mol, xc="b3lyp5")
    mf.kernel(dm0=model_guess("hamiltonian-water-b3lyp5-def2svp-v2", mf))

It sits above the registry (a model named by string is loaded with :func:`zoo.load`); the physics
it uses, the base Hamiltonian and the density of a Hamiltonian, is :mod:`zoo.qc.guess`.
"""

from __future__ import annotations

import numpy as np

from zoo.qc.guess import base_hamiltonian_of


def model_guess(model, mf, lindep: float | None = None, base_grid_level: int | None = 1) -> np.ndarray:
    """The density matrix a Hamiltonian model predicts for ``mf``'s molecule: a ``dm0`` for PySCF.

    Args:
        model: a registry name or folder (loaded with :func:`zoo.load`), a Hamiltonian task, or a
            :class:`~zoo.models.HamiltonianModel`.
        mf: a PySCF RKS/RHF object (or a built ``Mole``, which skips the functional check).
        lindep: see :meth:`~zoo.models.HamiltonianModel.predict`.
        base_grid_level: for a model that learns a correction to a base Hamiltonian, the PySCF grid
            level of the base's XC part where ``mf``'s grid is finer (``None``: ``mf``'s grid). The
            default, 1, gives the same SCF cycles as ``mf``'s grid 3 at a quarter less guess time;
            see :func:`zoo.qc.guess.base_hamiltonian_of`.

    Raises:
        ValueError: the molecule's basis, functional or charge differs from the model's level of
            theory (the guess would be for another Hamiltonian), or an element the model lacks.
    """
    if isinstance(model, str):
        import zoo

        model = zoo.load(model)
    model = getattr(model, "model", model)
    if not hasattr(model, "level") or not hasattr(model, "predict"):
        raise TypeError(f"{type(model).__name__} is not a Hamiltonian model (it needs .level and .predict)")
    level = model.level
    mol = getattr(mf, "mol", mf)
    problems = []
    if not isinstance(mol.basis, str) or mol.basis.lower() != level.basis:
        problems.append(f"basis {mol.basis!r} (model: {level.basis!r})")
    if mf is not mol:
        xc = getattr(mf, "xc", None)
        xc = xc.lower() if isinstance(xc, str) else None
        if xc != level.xc:
            problems.append(f"functional {xc!r} (model: {level.xc!r})")
    if mol.charge != level.charge or mol.spin != level.spin:
        problems.append(f"charge {mol.charge}, spin {mol.spin} (model: {level.charge}, {level.spin})")
    if problems:
        raise ValueError(f"the SCF differs from the model's level of theory ({level.describe()}): "
                         f"{'; '.join(problems)}. Run the SCF at the model's level, or use a model trained at yours "
                         "(zoo list)")
    base = None
    if getattr(model, "base", None) is not None and mf is not mol:
        # the base on the user's own SCF object: its two-electron integrals are then built once, for both
        base = base_hamiltonian_of(model.base, mf, grid_level=base_grid_level)
    return model.predict((mol.atom_charges(), mol.atom_coords(unit="Angstrom")), lindep=lindep, base=base)["density_matrix"]
