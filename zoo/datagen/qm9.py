"""QM9 molecules for multi-task training on heterogeneous data (Ren et al., NeurIPS 2024): each
molecule's cheap structure, a GFN2-xTB minimum of an RDKit conformer of its SMILES, next to QM9's own
geometry in the same atom order (:mod:`zoo.data.molgraph`). :func:`zoo.datagen.sampling_runs.sample_qm9`
runs it over many rows.
"""

from __future__ import annotations

from zoo.datagen import sampling


#: Where a cheap structure starts: an RDKit conformer of the SMILES (a new molecule has no other
#: geometry), or QM9's own geometry (the cheap minimum then shares QM9's conformer, as PubChemQC's
#: PM6 and B3LYP structures share theirs).
STARTS = ("rdkit", "qm9")


def qm9_sampler(seed: int, fmax: float, start: str = "rdkit") -> str:
    """How :func:`qm9_molecule` makes a cheap structure, as recorded in ``info["sampler"]``."""
    origin = f"QM9 SMILES, RDKit ETKDG seed {seed} + MMFF" if start == "rdkit" else "QM9 geometry"
    return f"{origin}, {sampling.XTB_METHOD} BFGS fmax {fmax:g} eV/Å"


def qm9_reference(data, row: int):
    """QM9's own geometry of one molecule in the atom order of its SMILES (the reference frame of
    :func:`qm9_molecule`), with ``info`` as there; ``ValueError`` for a net charge or a geometry
    whose bonds differ from the SMILES."""
    from zoo.data.molgraph import formal_charge, mapped_smiles, match_to_smiles, mol_from_smiles

    mol = mol_from_smiles(data.smiles)
    charge = formal_charge(mol)
    if charge != 0:
        raise ValueError(f"net charge {charge:+d}: only neutral molecules are sampled (closed-shell, charge 0)")
    try:
        reference = match_to_smiles(data.to_ase(), data.smiles)
    except ValueError as error:
        raise ValueError(f"QM9 geometry: {error}") from None
    reference.info.update(smiles=mapped_smiles(mol), qm9_id=int(data.qm9_id[0]), qm9_row=int(row), charge=0,
                          structure_kind=sampling.QM9_REFERENCE)
    return reference


def qm9_molecule(data, row: int, seed: int = 0, fmax: float = 0.01, steps: int = 1000, start: str = "rdkit") -> tuple:
    """The cheap structure and the reference geometry of one QM9 molecule, in one atom order.

    The QM9 SMILES is read with :func:`~zoo.data.molgraph.mol_from_smiles`; QM9's own geometry is
    put in its atom order with :func:`~zoo.data.molgraph.match_to_smiles`. The cheap structure is
    a GFN2-xTB minimum (:func:`~zoo.datagen.sampling.xtb_optimize`) from an RDKit conformer
    (``start="rdkit"``, :func:`~zoo.datagen.sampling.embed` with ``seed``) or from QM9's geometry
    (``start="qm9"``: the same conformer); its bonds must still be those of the SMILES
    (:func:`~zoo.data.molgraph.same_connectivity`).

    Args:
        data: the molecule as :func:`~zoo.data.readers.qm9.read_qm9` returns it (read it with
            ``dtype="float64"`` to keep every digit of QM9's coordinates).
        row: its 0-based qm9pack row.
        start: one of :data:`STARTS`.

    Returns:
        ``(cheap, reference)``: :class:`ase.Atoms` whose ``info`` holds ``smiles`` (the
        :func:`~zoo.data.molgraph.mapped_smiles` of the frame: its atom order), ``qm9_id``,
        ``qm9_row``, ``charge`` (0) and ``structure_kind``
        (:data:`~zoo.datagen.sampling.XTB_OPTIMIZED` or :data:`~zoo.datagen.sampling.QM9_REFERENCE`);
        the cheap one also ``xtb_energy`` (eV), ``xtb_forces`` (eV/Å)
        and ``sampler`` (:func:`qm9_sampler`).

    Raises:
        ValueError: what the molecule fails: a net charge, a QM9 geometry whose bonds differ
            from its SMILES, no RDKit embedding, an xTB optimisation that did not converge in
            ``steps`` steps or that changed the bonds.
    """
    from zoo.data.molgraph import mol_from_smiles, same_connectivity

    if start not in STARTS:
        raise ValueError(f"start must be one of {STARTS}, got {start!r}")
    smiles = data.smiles
    reference = qm9_reference(data, row)
    info = {k: reference.info[k] for k in ("smiles", "qm9_id", "qm9_row", "charge")}
    mol = mol_from_smiles(smiles)
    try:
        initial = sampling.embed(mol, seed=seed) if start == "rdkit" else reference
        cheap = sampling.xtb_optimize(initial, fmax=fmax, steps=steps)
    except RuntimeError as error:  # not converged, or tblite's SCC failed (ASE's CalculationFailed)
        raise ValueError(f"{sampling.XTB_METHOD} optimisation: {error}") from None
    if not same_connectivity(cheap, info["smiles"]):
        raise ValueError(f"the {sampling.XTB_METHOD} optimisation changed the bonds of {smiles!r} (broken, formed or moved)")
    cheap.info.update(info, structure_kind=sampling.XTB_OPTIMIZED, sampler=qm9_sampler(seed, fmax, start))
    return cheap, reference
