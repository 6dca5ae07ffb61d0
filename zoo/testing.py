"""Test helpers: move a structure rigidly or relabel its atoms, and check that a model follows.

Like :func:`e3nn.util.test.assert_equivariant`, but for functions of a whole structure (an
:class:`~zoo.data.AtomicData` or a batch): the positions are rotated, reflected, translated or
permuted and the outputs are compared with the reference outputs transformed by the D matrices
of their irreps. Model families reuse these in their own tests::

    from zoo.testing import assert_backbone_equivariant, assert_equivariant

    assert_backbone_equivariant(backbone, data)
    assert_interaction_equivariant(layer, irreps_sh)   # one message-passing layer on its own
    assert_equivariant(lambda d: model(d)["energy"][:, None], data, "0e", per_atom=False)
    assert_equivariant(lambda d: model(d)["forces"], data, "1x1o")  # e3nn 0.6: 1o is (x, y, z)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from e3nn import o3

from zoo.data import batch_index, keys

#: Default tolerance on the largest error relative to the largest output (at least 1).
TOLERANCE = {torch.float32: 1e-4, torch.float64: 1e-10}

#: Cartesian vectors (rows, xyz) that rotate with the positions.
VECTOR_KEYS = (keys.FORCES, keys.DIPOLE)


def random_rotation(
    dtype: torch.dtype = torch.float64, improper: bool = False, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A uniformly random 3x3 rotation matrix (det +1), or a rotation times inversion (det -1)."""
    q, r = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=generator))
    q = q * torch.sign(torch.diagonal(r))  # makes the distribution uniform (Haar)
    if torch.linalg.det(q) < 0:
        q = -q
    return (-q if improper else q).to(dtype)


def random_permutation(data, generator: torch.Generator | None = None) -> torch.Tensor:
    """A permutation of the atoms that keeps every atom within its structure (batches stay valid)."""
    structure = batch_index(data).cpu()
    order = torch.randperm(structure.numel(), generator=generator)
    # stable sort by structure of a random order: a random permutation inside each structure
    return order[torch.sort(structure[order], stable=True).indices].to(data[keys.POSITIONS].device)


def transform(
    data,
    rotation: torch.Tensor | None = None,
    translation: torch.Tensor | None = None,
    permutation: torch.Tensor | None = None,
):
    """A copy of ``data`` with positions ``pos @ rotation.T + translation`` and atoms reordered.

    Atom k of the result is atom ``permutation[k]`` of ``data``. Cells, forces, dipoles and
    stresses rotate with the positions; an ``edge_index`` or ``bond_index`` is relabelled (edge
    order is kept).
    Other keys are copied unchanged.
    """
    moved = data.clone()
    if rotation is not None:
        rotation = rotation.to(data[keys.POSITIONS].dtype)
        for key in (keys.POSITIONS, keys.CELL, *VECTOR_KEYS):
            if key in moved:
                moved[key] = moved[key] @ rotation.T
        if keys.STRESS in moved:
            moved[keys.STRESS] = rotation @ moved[keys.STRESS] @ rotation.T
    if translation is not None:
        moved[keys.POSITIONS] = moved[keys.POSITIONS] + translation.to(moved[keys.POSITIONS].dtype)
    if permutation is not None:
        for key in (*keys.PER_ATOM, keys.BATCH):
            if key in moved and moved[key] is not None:
                moved[key] = moved[key][permutation]
        inverse = torch.empty_like(permutation)
        inverse[permutation] = torch.arange(permutation.numel(), device=permutation.device)
        for key in (keys.EDGE_INDEX, keys.BOND_INDEX):
            if key in moved:
                moved[key] = inverse[moved[key]]
    return moved


def wigner_D(irreps, rotation: torch.Tensor) -> torch.Tensor:
    """``irreps.D_from_matrix(rotation)`` accurate to float64 precision, in the rotation's dtype.

    e3nn builds its Lie-algebra generators in torch's default dtype, so with the usual float32
    default its D matrices are only good to ~1e-7 even for a float64 rotation: too coarse to
    check a float64 model to 1e-10.
    """
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        matrix = o3.Irreps(irreps).D_from_matrix(rotation.to(torch.float64))
    finally:
        torch.set_default_dtype(previous)
    return matrix.to(rotation.dtype)


def transform_features(
    features: torch.Tensor,
    irreps,
    rotation: torch.Tensor | None = None,
    permutation: torch.Tensor | None = None,
) -> torch.Tensor:
    """Features [n, irreps.dim] in e3nn's basis after rotating (:func:`wigner_D`) and reordering."""
    if rotation is not None:
        features = features @ wigner_D(irreps, rotation.to(features.dtype)).T
    if permutation is not None:
        features = features[permutation]
    return features


def assert_equivariant(
    fn: Callable[..., torch.Tensor],
    data,
    irreps_out,
    node_inputs: Sequence[tuple[torch.Tensor, object]] = (),
    *,
    per_atom: bool = True,
    rotation: bool = True,
    reflection: bool = True,
    translation: bool = True,
    permutation: bool = True,
    atol: float | None = None,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """Check that ``fn(data, *inputs)`` transforms like ``irreps_out`` when ``data`` moves.

    Each check is done separately on a copy of ``data``: a random proper rotation, a random
    improper rotation (tests parity), a random translation (outputs must not change) and a random
    permutation of the atoms (per-atom outputs must follow; per-structure ones must not change).

    Args:
        fn: maps a structure (and the node inputs) to a tensor [rows, irreps_out.dim] in e3nn's basis.
        data: an AtomicData or a batch; its dtype sets the default tolerance.
        irreps_out: irreps of the output rows.
        node_inputs: extra per-atom inputs ``(tensor [n_atoms, irreps.dim], irreps)`` passed to ``fn``
            after ``data``, transformed with the structure.
        per_atom: the output has one row per atom (permuted with the atoms) rather than per structure.
        atol: tolerance on the largest error relative to ``max(1, largest output)``;
            default :data:`TOLERANCE` of the data's dtype.
        generator: for reproducible random transformations.

    Returns:
        The relative errors by check name.

    Raises:
        AssertionError: naming each failed check and its error.
    """
    irreps_out = o3.Irreps(irreps_out)
    dtype = data[keys.POSITIONS].dtype
    atol = TOLERANCE.get(dtype, 1e-4) if atol is None else atol
    inputs = [(x, o3.Irreps(irreps)) for x, irreps in node_inputs]
    reference = fn(data, *[x for x, _ in inputs]).detach()

    checks = {}
    if rotation:
        checks["rotation"] = (random_rotation(dtype, False, generator), None, None)
    if reflection:
        checks["reflection"] = (random_rotation(dtype, True, generator), None, None)
    if translation:
        checks["translation"] = (None, 3.0 * torch.randn(3, dtype=dtype, generator=generator), None)
    if permutation:
        checks["permutation"] = (None, None, random_permutation(data, generator))

    errors = {}
    for name, (rot, shift, perm) in checks.items():
        moved = transform(data, rot, shift, perm)
        moved_inputs = [transform_features(x, irreps, rot, perm) for x, irreps in inputs]
        actual = fn(moved, *moved_inputs).detach()
        expected = transform_features(reference, irreps_out, rot, perm if per_atom else None)
        scale = expected.abs().max().clamp(min=1.0) if expected.numel() else 1.0
        errors[name] = float((actual - expected).abs().max() / scale) if expected.numel() else 0.0
    failed = {name: err for name, err in errors.items() if not err <= atol}
    if failed:
        raise AssertionError(f"output ({irreps_out}) not equivariant under {failed} (tolerance {atol:g}); all errors: {errors}")
    return errors


def assert_backbone_equivariant(model, data, extra_node_features: torch.Tensor | None = None, **kwargs) -> dict[str, float]:
    """:func:`assert_equivariant` for the node features of an :class:`~zoo.models.EquivariantBackbone`
    (anything with ``irreps_out`` whose output has ``node_features``).

    ``extra_node_features`` are transformed with the structure as ``model.irreps_extra``.
    """
    node_inputs = () if extra_node_features is None else [(extra_node_features, model.irreps_extra)]
    return assert_equivariant(
        lambda d, *extra: model(d, *extra).node_features, data, model.irreps_out, node_inputs, **kwargs
    )


def assert_interaction_equivariant(layer, irreps_sh, cutoff: float = 5.0, num_radial: int = 4,
                                    atol: float = 1e-10, seed: int = 0
                                    ) -> tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor]:
    """Check that an interaction layer (``layer(x, species, edge_index, sh, radial)``, as
    :class:`~zoo.nn.Interaction` and :class:`~zoo.nn.ManyBodyInteraction`) in float64 rotates its
    output with the edge vectors, under a proper and an improper rotation.

    Five atoms of two elements, six edges, invariant scalar inputs of ``layer.irreps_in``'s width.

    Returns:
        A function of positions to the layer's output, and the output at the reference positions,
        for further checks (e.g. that ``reset_parameters`` changes it).

    Raises:
        AssertionError: naming the rotation and its largest error.

    Example::

        layer = Interaction("4x0e", "4x0e+4x1o", o3.Irreps.spherical_harmonics(1), num_radial=4).double()
        run, out = assert_interaction_equivariant(layer, o3.Irreps.spherical_harmonics(1))
    """
    from zoo.nn import RadialEmbedding

    if o3.Irreps(layer.irreps_in).lmax > 0:
        raise ValueError(f"the check feeds random scalar node features; {type(layer).__name__} takes "
                         f"{layer.irreps_in}: rotate its inputs too (assert_equivariant on a backbone)")
    generator = torch.Generator().manual_seed(seed)
    pos = torch.randn(5, 3, dtype=torch.float64, generator=generator)
    x = torch.randn(5, o3.Irreps(layer.irreps_in).dim, dtype=torch.float64, generator=generator)
    species = torch.tensor([0, 1, 1, 0, 1])
    edge_index = torch.tensor([[1, 2, 3, 4, 0, 2], [0, 0, 0, 0, 1, 1]])
    sh = o3.SphericalHarmonics(irreps_sh, normalize=True, normalization="component")
    radial = RadialEmbedding(cutoff, num_radial)

    def run(positions: torch.Tensor) -> torch.Tensor:
        vectors = positions[edge_index[0]] - positions[edge_index[1]]
        return layer(x, species, edge_index, sh(vectors), radial(vectors.norm(dim=-1)))

    out = run(pos)
    assert out.shape == (5, layer.irreps_out.dim)
    for improper in (False, True):
        rotation = random_rotation(torch.float64, improper, generator)
        error = float((run(pos @ rotation.T) - out @ wigner_D(layer.irreps_out, rotation).T).abs().max().detach())
        assert error <= atol, f"{type(layer).__name__} not equivariant under {'im' * improper}proper rotation: {error:g}"
    return run, out


def toy_consistency_frames(smiles: Sequence[str], perturbed: int = 2, sigma: float = 0.05,
                           unlabelled: Sequence[str] = ("xtb_optimized",), seed: int = 0) -> list:
    """Small stand-in data for the consistency family, with MMFF94 (RDKit) as the "cheap" method
    and as the fake labels: for each SMILES an MMFF-optimised ETKDG conformer
    (``structure_kind="xtb_optimized"``), ``perturbed`` copies with Gaussian noise of ``sigma`` Å
    (``"perturbed"``) and a second optimised conformer as the reference (``"qm9_reference"``).

    Every frame carries ``info["smiles"]`` (mapped, in its atom order), ``info["qm9_id"]`` (the
    SMILES' position + 1) and ``info["structure_kind"]``; frames of the kinds not in
    ``unlabelled`` carry MMFF energies (eV) and forces (eV/Å) as calculator results, the way
    ``zoo label`` writes DFT labels. For tests and smoke runs only: MMFF is no reference method.
    """
    import numpy as np
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator
    from rdkit.Chem import rdDistGeom, rdForceFieldHelpers

    from zoo.data.molgraph import mapped_smiles, mol_from_smiles
    from zoo.data.units import KCAL_MOL

    rng = np.random.default_rng(seed)
    frames = []
    for number, text in enumerate(smiles, start=1):
        mol = mol_from_smiles(text)
        params = rdDistGeom.ETKDGv3()
        params.randomSeed = seed + number
        conformers = list(rdDistGeom.EmbedMultipleConfs(mol, 2, params))
        rdForceFieldHelpers.MMFFOptimizeMoleculeConfs(mol, maxIters=2000)
        force_field = rdForceFieldHelpers.MMFFGetMoleculeForceField(
            mol, rdForceFieldHelpers.MMFFGetMoleculeProperties(mol))
        optimised = [mol.GetConformer(c).GetPositions() for c in conformers]
        structures = [("xtb_optimized", optimised[0])]
        structures += [("perturbed", optimised[0] + sigma * rng.standard_normal(optimised[0].shape))
                       for _ in range(perturbed)]
        structures.append(("qm9_reference", optimised[1]))
        info = {"smiles": mapped_smiles(mol), "qm9_id": number}
        for kind, positions in structures:
            atoms = Atoms(numbers=[a.GetAtomicNum() for a in mol.GetAtoms()], positions=positions,
                          info={**info, "structure_kind": kind})
            if kind not in unlabelled:
                flat = positions.reshape(-1).tolist()
                energy = force_field.CalcEnergy(flat) * KCAL_MOL
                forces = -np.asarray(force_field.CalcGrad(flat)).reshape(-1, 3) * KCAL_MOL
                atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces)
            frames.append(atoms)
    return frames
