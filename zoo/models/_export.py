"""``torch.export`` of a model's inference for one structure on a given graph.

The exported program is the model's own forward pass on tensors, traced once for any number of
atoms and edges: what stays outside is what depends on the values of the data, the neighbour
list (radius graph, or the consistency model's molecular graph) and the checks of the input.
:func:`export_inputs` computes the program's inputs for a structure, and documents them.

Forces are ``-dE/dr`` by autograd. ``torch.export`` does not trace ``torch.autograd.grad`` (the
backward pass creates constants it cannot place), so a force field is exported in two steps, as
NequIP does: the energy is exported, then ``make_fx`` traces energy and gradient together into
one graph of ATen operations, which is exported again. Symbolic shapes are traced without duck
sizing, which would otherwise tie a number of atoms or edges to an equal constant dimension of
the weights.

Not exportable: a Hamiltonian model, whose blocks have one shape per element and element pair,
selected from the atoms' elements at run time (the graph depends on the composition, not only
on the number of atoms), and whose base Hamiltonian, if any, comes from PySCF. It compiles
(:func:`~zoo.models.compile_for_inference`).
"""

from __future__ import annotations

import warnings

import torch

from zoo.data import keys

#: Input names of the exported programs, per kind of model.
INPUTS = ("z", "pos", "edge_index")
CONSISTENCY_INPUTS = (*INPUTS, "edge_features", "atom_features")


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model of a task (``zoo.load``'s result), or ``model`` itself."""
    inner = getattr(model, "model", None)
    return inner if isinstance(inner, torch.nn.Module) else model


def _kind(model: torch.nn.Module) -> str:
    from zoo.models import MPNN, ConsistencyModel, ForceFieldModel, HamiltonianModel, PropertyModel

    if isinstance(model, ConsistencyModel):
        return "consistency"
    if isinstance(model, ForceFieldModel) and model.forces:
        return "force_field"
    if isinstance(model, (PropertyModel, MPNN)):
        return "property"
    if isinstance(model, HamiltonianModel):
        raise TypeError(
            "a Hamiltonian model cannot be exported: its blocks have one shape per element and element pair, "
            "selected from the atoms' elements at run time, so its graph depends on the composition of the "
            "molecule and not only on its number of atoms (and a base Hamiltonian comes from PySCF); "
            "use zoo.models.compile_for_inference(model) for faster inference"
        )
    raise TypeError(f"cannot export {type(model).__name__}: export_model knows the models of zoo.models "
                    "(PropertyModel, ForceFieldModel, MPNN, ConsistencyModel)")


def export_inputs(model: torch.nn.Module, structure) -> dict[str, torch.Tensor]:
    """The inputs of ``model``'s exported program (:func:`export_model`) for one molecule.

    For every model, in this order:

    - ``z`` [n_atoms] long: atomic numbers;
    - ``pos`` [n_atoms, 3] Å, in the model's dtype;
    - ``edge_index`` [2, n_edges] long, row 0 the neighbour j and row 1 the centre i of each
      edge: every ordered pair of distinct atoms closer than the model's cutoff
      (``model.backbone.cutoff``, ``model.cutoff`` for an MPNN); for a consistency model every
      ordered pair of atoms;

    and for a consistency model also

    - ``edge_features`` [n_edges, 5 + max_graph_distance]: bond class and graph distance of
      each pair (:func:`zoo.models.consistency.molecular_edges`);
    - ``atom_features`` [n_atoms, len(ATOM_FEATURE_NAMES)] (:mod:`zoo.data.transforms`).

    Args:
        model: the model, or a task holding one.
        structure: an :class:`ase.Atoms` or :class:`~zoo.data.AtomicData`; for a consistency model
            with its molecular graph (an ``Atoms`` with ``info["smiles"]`` in the atoms' order, as
            ``generate`` and the data files write it).

    Raises:
        TypeError: the model cannot be exported (a Hamiltonian model: see :func:`export_model`).
        ValueError: a periodic structure (the programs are for molecules), or a structure the
            model refuses (unknown elements, a molecule without its molecular graph).
    """
    from zoo.data import AtomicData
    from zoo.data.neighbors import radius_graph

    model = _unwrap(model)
    kind = _kind(model)
    dtype = next(model.parameters()).dtype
    if kind == "consistency":
        data = _consistency_data(model, structure)
    elif isinstance(structure, AtomicData):
        data = _in_dtype(structure, dtype)
    else:
        data = AtomicData.from_ase(structure, dtype=dtype)
    if keys.N_ATOMS in data and data[keys.N_ATOMS].numel() != 1:
        raise ValueError(f"an exported program takes one molecule per call; got a batch of {data[keys.N_ATOMS].numel()}")
    if keys.PBC in data and bool(data[keys.PBC].any()):
        raise ValueError("an exported program takes molecules: the structure is periodic (its pbc is set), and "
                         "the program has no lattice offsets for its edges; use the model itself")
    z, pos = data[keys.ATOMIC_NUMBERS], data[keys.POSITIONS]
    if kind == "consistency":
        prepared = model.prepare(data)
        return {"z": z, "pos": pos, "edge_index": prepared[keys.EDGE_INDEX],
                "edge_features": prepared[keys.EDGE_FEATURES], "atom_features": data[keys.ATOM_FEATURES].to(dtype)}
    cutoff = model.backbone.cutoff if hasattr(model, "backbone") else model.cutoff
    edge_index, _ = radius_graph(pos, cutoff)
    return {"z": z, "pos": pos, "edge_index": edge_index}


def _consistency_data(model, structure):
    from zoo.data import AtomicData
    from zoo.data.transforms import MolecularGraph

    if isinstance(structure, AtomicData):
        if keys.ATOM_FEATURES not in structure and keys.SMILES in structure:
            structure = MolecularGraph()(structure.clone())
        return _in_dtype(structure, next(model.parameters()).dtype)
    smiles = structure.info.get("smiles")
    if not smiles:
        raise ValueError("a consistency model's program needs the molecular graph: set atoms.info['smiles'] (with "
                         "the atoms in its order, as generate() writes it)")
    return model.graph_data(smiles, structure.positions, structure.numbers)


def _in_dtype(data, dtype: torch.dtype):
    """``data`` with its floating-point tensors in ``dtype`` (a copy if any changes)."""
    if all(not value.is_floating_point() or value.dtype == dtype
           for value in data.to_dict().values() if isinstance(value, torch.Tensor)):
        return data
    return data.clone().apply(lambda value: value.to(dtype) if value.is_floating_point() else value)


class _Predictions(torch.nn.Module):
    """A model's predictions for one molecule from :func:`export_inputs`' tensors (energy only
    for a force field: :func:`export_model` adds the forces)."""

    def __init__(self, model: torch.nn.Module, kind: str):
        super().__init__()
        self.model = model
        self.kind = kind

    def forward(self, z, pos, edge_index, edge_features=None, atom_features=None) -> dict[str, torch.Tensor]:
        from zoo.models import ForceFieldModel, PropertyModel

        # one structure: no batch index, and one count of atoms
        data = {keys.ATOMIC_NUMBERS: z, keys.POSITIONS: pos, keys.EDGE_INDEX: edge_index,
                keys.N_ATOMS: torch.ones_like(z).sum().reshape(1)}
        if self.kind == "consistency":
            data[keys.EDGE_FEATURES], data[keys.ATOM_FEATURES] = edge_features, atom_features
            # the energy model is the network at diffusion time 0
            conditioning = self.model._conditioning(data, torch.zeros(1, dtype=torch.long, device=z.device))
            return PropertyModel.forward(self.model, data, conditioning)
        if isinstance(self.model, ForceFieldModel):
            return self.model.energy(data)  # the forces are the program's own gradient
        if isinstance(self.model, PropertyModel):
            return PropertyModel.forward(self.model, data)
        return self.model(data)


def export_model(model: torch.nn.Module, example) -> torch.export.ExportedProgram:
    """``model``'s inference for one molecule as a ``torch.export`` program.

    The program takes the tensors of :func:`export_inputs` positionally, in that order, for any
    number of atoms (2 or more) and edges (2 or more), and returns the model's
    predictions for the molecule, as its forward pass does: ``{"energy": [1] eV, "forces":
    [n_atoms, 3] eV/Å}`` for a force field or a consistency model's energy model,
    ``{target: [1]}`` for a property model. Save it with ``torch.export.save(program, "x.pt2")``;
    ``torch.export.load`` runs it without zoo (``.module()``), and AOTInductor can compile it.

    What stays outside the program: the neighbour list (and a consistency model's molecular
    graph), computed by :func:`export_inputs`, and the checks of the input but one: an element
    the model does not know fails inside the program. The program is checked against the model
    on the example before it is returned.

    Args:
        model: a :class:`~zoo.models.PropertyModel`, :class:`~zoo.models.ForceFieldModel`,
            :class:`~zoo.models.MPNN` or :class:`~zoo.models.ConsistencyModel` (the energy model;
            generation is not exported), or a task holding one.
        example: a molecule to trace with (``export_inputs``' ``structure``), with at least 2
            atoms and 2 edges.

    Raises:
        TypeError: a Hamiltonian model (its graph depends on the molecule's composition: use
            :func:`~zoo.models.compile_for_inference`), or a module zoo does not know.
        ValueError: an example too small to trace the sizes of molecules with.
        RuntimeError: the program does not reproduce the model on the example (a bug: please report).
    """
    model = _unwrap(model)
    kind = _kind(model)
    inputs = export_inputs(model, example)
    n_atoms, n_edges = inputs["z"].shape[0], inputs["edge_index"].shape[1]
    if n_atoms < 2 or n_edges < 2:
        raise ValueError(f"the example has {n_atoms} atom(s) and {n_edges} edge(s) within the cutoff: export_model "
                         "traces with a molecule of at least 2 atoms and 2 edges, whose sizes are then free")
    atoms, edges = torch.export.Dim("atoms", min=2), torch.export.Dim("edges", min=2)
    shapes = {"z": {0: atoms}, "pos": {0: atoms}, "edge_index": {1: edges}}
    if kind == "consistency":
        shapes |= {"edge_features": {0: edges}, "atom_features": {0: atoms}}
    training = model.training
    model.eval()
    try:
        with warnings.catch_warnings():
            # torch.nn.LSTM (an MPNN's set2set readout) re-assigns its list of weights on every
            # call; the program holds the weights all the same (the check below runs it)
            warnings.filterwarnings("ignore", message=r"The tensor attributes .*_flat_weights")
            program = torch.export.export(_Predictions(model, kind), tuple(inputs.values()), dynamic_shapes=shapes)
            if kind in ("force_field", "consistency"):
                program = torch.export.export(_trace_forces(program, inputs), tuple(inputs.values()),
                                              dynamic_shapes=shapes)
        _check(program, model, kind, inputs)
    finally:
        model.train(training)
    return program


def _trace_forces(energy: torch.export.ExportedProgram, inputs: dict[str, torch.Tensor]) -> torch.fx.GraphModule:
    """One graph of ATen operations computing the energy and ``-dE/dpos`` of an exported energy,
    with the inputs named as ``inputs``."""
    from torch.fx.experimental import _config as fx_config
    from torch.fx.experimental.proxy_tensor import make_fx

    module, names = energy.module(), list(inputs)

    def energy_and_forces(*values):
        values = list(values)
        pos = values[1] = values[1].detach().requires_grad_(True)
        with torch.enable_grad():
            value = module(*values)[keys.ENERGY]
            (gradient,) = torch.autograd.grad(value.sum(), pos)
        return {keys.ENERGY: value.detach(), keys.FORCES: -gradient}

    with fx_config.patch(use_duck_shape=False):
        graph = make_fx(energy_and_forces, tracing_mode="symbolic", _allow_non_fake_inputs=True)(*inputs.values())
    # make_fx names the inputs arg0_1, ...: the program's signature takes the names of export_inputs
    for node, name in zip(graph.graph.find_nodes(op="placeholder"), names):
        node.name = node.target = name
    graph.recompile()
    return graph


def _check(program: torch.export.ExportedProgram, model, kind: str, inputs: dict[str, torch.Tensor]) -> None:
    got = program.module()(*inputs.values())
    pos = inputs["pos"].detach().requires_grad_(True)
    with torch.enable_grad():
        expected = _Predictions(model, kind)(**{**inputs, "pos": pos})
        if kind in ("force_field", "consistency"):
            (gradient,) = torch.autograd.grad(expected[keys.ENERGY].sum(), pos)
            expected[keys.FORCES] = -gradient
    for name, value in expected.items():
        tolerance = 1e-5 if value.dtype == torch.float32 else 1e-10
        if got[name].shape != value.shape or not torch.allclose(got[name], value, rtol=tolerance, atol=tolerance):
            raise RuntimeError(f"the exported program's {name!r} differs from the model's on the example "
                               f"(max |difference| {float((got[name] - value).abs().max()):.3g}); please report this")
