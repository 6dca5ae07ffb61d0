"""One inference API for every model family: ASE structures in, NumPy out.

Each model class *declares* what it can do by the interfaces it implements, and one loop does the
rest (as NequIP and fairchem declare a model's outputs instead of probing for attributes):

- :class:`Predictor`: ``predict(structures, batch_size)`` returns one dict of NumPy float64
  arrays and Python floats per structure, with the keys and units of :attr:`~Predictor.prediction_units`.
  A model with a potential energy (:attr:`~Predictor.energy_key`) also has ``as_calculator()``,
  an ASE calculator (:class:`ZooCalculator`, whose public name is ``zoo.interfaces.ZooCalculator``;
  it is defined here, beside the method that builds it, so that the models need nothing above
  them). Every zoo model is one.
- :class:`StructureGenerator`: ``generate(molecule, k)`` returns ``k`` structures of a molecule
  (the consistency model).

A family declares three things: what it predicts (:attr:`~Predictor.prediction_units`), how one
structure becomes its input (:meth:`~Predictor.structure_input`) and how its output for a batch
becomes one dict per structure (:meth:`~Predictor.structure_results`). :func:`predict_structures`
is the loop they share: batches of ``batch_size``, eval mode and no gradients kept, errors that
name the structure, one :class:`~zoo.models.ExtrapolationWarning` for the structures outside the
model's :class:`~zoo.models.TrainingDomain`. The model runs through its own ``forward``, so its
forward hooks (the registry's element guard on a loaded model) see every batch.

Example:
    >>> import torch
    >>> from ase.build import molecule
    >>> from zoo.models import EquivariantBackbone, ForceFieldModel
    >>> model = ForceFieldModel(EquivariantBackbone(["H", "O"], channels=4, l_max=1, num_layers=1))
    >>> model.prediction_units
    {'energy': 'eV', 'forces': 'eV/Å'}
    >>> result = model.predict(molecule("H2O"))
    >>> type(result["energy"]).__name__, result["forces"].shape, result["forces"].dtype
    ('float', (3, 3), dtype('float64'))
    >>> len(model.predict([molecule("H2O")] * 3, batch_size=2))
    3
"""

from __future__ import annotations

import abc
import copy
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes

from zoo.data import AtomicData, atom_ranges, keys, n_structures
from zoo.data.readers.qm9 import QM9_PROPERTIES
from zoo.models._domain import TrainingDomain

#: Structures per forward pass of ``predict`` by default.
BATCH_SIZE = 32

#: The units of what zoo's models predict, by canonical key (:mod:`zoo.data.keys`): ASE's for
#: energies and forces, those of :data:`~zoo.data.readers.qm9.QM9_PROPERTIES` for QM9's targets.
UNITS: dict[str, str] = {
    keys.ENERGY: "eV",
    keys.FORCES: "eV/Å",
    **{key: unit for key, (_, _, unit) in QM9_PROPERTIES.items()},
}

#: Predictions an ASE calculator may report as the potential energy (eV), in order of preference:
#: the energy, and QM9's internal energy at 0 K (the electronic energy plus the zero-point energy).
POTENTIAL_ENERGIES = (keys.ENERGY, keys.U0)


def units_of(targets: Sequence[str]) -> dict[str, str]:
    """``{target: unit}`` for the canonical keys ``targets`` (:data:`UNITS`); a key zoo does not
    know keeps the unit of its labels, which only the data can say."""
    return {target: UNITS.get(target, "the unit of its labels") for target in targets}


class StructureInput(NamedTuple):
    """One structure made ready for a model by :meth:`Predictor.structure_input`.

    Attributes:
        data: the model's input, batched with the other structures' for one forward pass.
        context: what :meth:`Predictor.structure_results` needs besides the model's output (the
            atom order of a consistency model's input, the PySCF molecule of a Hamiltonian's).
    """

    data: AtomicData
    context: Any = None


class Predictor(abc.ABC):
    """Declares that a model (a :class:`torch.nn.Module`) answers ASE structures: :meth:`predict`,
    and :meth:`as_calculator` if it has a potential energy.

    Subclasses declare :attr:`prediction_units`; the default :meth:`structure_input` (an
    :class:`~zoo.data.AtomicData` in the model's dtype) and :meth:`structure_results` (per-structure
    outputs as floats, per-atom ones as ``[n_atoms, ...]`` arrays) fit models whose forward maps a
    batch to ``{key: [n_structures]}`` and ``{key: [n_atoms, ...]}`` tensors.
    """

    @property
    @abc.abstractmethod
    def prediction_units(self) -> dict[str, str]:
        """``{key: unit}``: the keys of :meth:`predict`'s dicts, and the unit of each."""

    @property
    def energy_key(self) -> str | None:
        """The prediction an ASE calculator reports as the potential energy (eV), the first of
        :data:`POTENTIAL_ENERGIES` the model predicts; ``None`` for a model without one."""
        return next((key for key in POTENTIAL_ENERGIES if key in self.prediction_units), None)

    def structure_input(self, atoms) -> StructureInput:
        """The model's input for one :class:`ase.Atoms`, in its dtype; a ``ValueError`` for a
        structure it cannot take (atoms on top of each other, NaN positions)."""
        return StructureInput(AtomicData.from_ase(atoms, dtype=next(self.parameters()).dtype))

    def structure_results(self, outputs: dict[str, torch.Tensor], batch,
                          inputs: Sequence[StructureInput]) -> list[dict[str, Any]]:
        """One dict per structure of ``batch`` from the model's ``outputs`` on it."""
        return split_structures(outputs, batch, self.prediction_units)

    def predict(self, structures, batch_size: int = BATCH_SIZE):
        """The model's predictions for one structure or many.

        Args:
            structures: an :class:`ase.Atoms` or a pair ``(atomic numbers [n], positions [n, 3] Å)``,
                or a list of them.
            batch_size: structures per forward pass.

        Returns:
            For one structure a dict ``{key: value}`` with the keys and units of
            :attr:`prediction_units` (per-structure values as floats, per-atom ones as
            ``[n_atoms, ...]`` float64 arrays in the atoms' order); for a list, a list of them in order.

        Raises:
            TypeError: ``structures`` are no structures.
            ValueError: a structure (named by its position) the model cannot take.
            zoo.registry.UnsupportedElementsError: elements a loaded model was not trained on.

        Warns:
            ExtrapolationWarning: structures outside the model's training domain (one warning).
        """
        return predict_structures(self, structures, batch_size)

    def as_calculator(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None, **kwargs):
        """The model as an ASE calculator, its :attr:`energy_key` as the potential energy (eV) and
        its forces (eV/Å) if it predicts them; see :class:`zoo.interfaces.ZooCalculator`, whose
        arguments these are.

        Raises:
            TypeError: the model predicts no potential energy.
        """
        if self.energy_key is None:
            raise TypeError(
                f"{type(self).__name__} predicts {', '.join(self.prediction_units)}, no potential energy "
                f"({' or '.join(POTENTIAL_ENERGIES)}), so it has no ASE calculator; use predict(atoms)"
            )
        return ZooCalculator(self, device=device, dtype=dtype, **kwargs)


class ZooCalculator(Calculator):
    """ASE calculator for a :class:`~zoo.models.Predictor` with a potential energy: a force field, a
    consistency model's energy model, a property model of an energy such as QM9's U0.

    The potential energy (eV) is the model's :attr:`~zoo.models.Predictor.energy_key` prediction,
    and the forces (eV/Å) are the model's if it predicts them (``implemented_properties`` says
    which): a property model of U0 gives energies only. Use ``as_calculator()`` of the model, or
    of the task ``zoo.load`` returns::

        atoms.calc = zoo.load("ethanol-dens-pbe-def2svp").as_calculator()
        atoms.get_potential_energy(), atoms.get_forces()
        results = atoms.calc.predict(list_of_atoms, batch_size=64)  # many structures at once

    The calculator evaluates ``model`` itself when it is already on ``device`` in ``dtype``, so
    later changes to its weights show; otherwise it evaluates a copy converted to them, and the
    caller's model is neither moved nor cast (``as_calculator(dtype=torch.float64)`` on a float32
    model, or the reverse). The model runs in eval mode during a calculation and gets its own
    mode back after it. Structures outside the model's :class:`~zoo.models.TrainingDomain` get an
    :class:`~zoo.models.ExtrapolationWarning` (once per call). A consistency model reads each
    structure on its molecular graph, ``atoms.info["smiles"]``.

    Args:
        model: the model.
        device: where to run (default: where the model's parameters are).
        dtype: floating dtype of the calculation (default: the model's parameters').

    Raises:
        TypeError: the model is no :class:`~zoo.models.Predictor`, or predicts no potential energy.
    """

    def __init__(self, model: Predictor, device: str | torch.device | None = None,
                 dtype: torch.dtype | None = None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(model, Predictor):
            raise TypeError(f"{type(model).__name__} is no zoo.models.Predictor: a ZooCalculator runs zoo's models "
                            "(or a model class that declares Predictor); a task's calculator is task.as_calculator()")
        if model.energy_key is None:
            raise TypeError(f"{type(model).__name__} predicts {', '.join(model.prediction_units)}, no potential "
                            "energy: it has no ASE calculator")
        parameter = next(model.parameters())
        self.device = torch.device(device) if device is not None else parameter.device
        self.dtype = dtype or parameter.dtype
        if (parameter.device, parameter.dtype) != (self.device, self.dtype):
            model = copy.deepcopy(model).to(self.device, self.dtype)
        self.model = model
        self.energy_key = model.energy_key
        self.implemented_properties = ["energy", "free_energy"] + (
            ["forces"] if keys.FORCES in model.prediction_units else [])

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        (result,) = self.predict([self.atoms], batch_size=1)
        self.results = {"free_energy": result["energy"], **result}

    def predict(self, images: Sequence, batch_size: int = BATCH_SIZE) -> list[dict[str, np.ndarray | float]]:
        """Energy (eV) and, if the model predicts them, forces (eV/Å) of many :class:`ase.Atoms`,
        ``batch_size`` per model call: one ``{"energy": float, "forces": [n_atoms, 3] array}`` per
        structure, in order (the model's :meth:`~zoo.models.Predictor.predict`, under ASE's names).

        Raises:
            ValueError: a structure (named by its position) has two atoms closer than
                :data:`zoo.data.neighbors.MIN_INTERATOMIC_DISTANCE`, or NaN positions.
        """
        names = {self.energy_key: "energy", keys.FORCES: "forces"}
        return [{names[key]: value for key, value in result.items() if key in names}
                for result in self.model.predict(list(images), batch_size)]


class StructureGenerator(abc.ABC):
    """Declares that a model generates structures of a molecule (a SMILES or an RDKit molecule)."""

    @abc.abstractmethod
    def generate(self, molecule, k: int = 1, **options) -> list:
        """``k`` structures of ``molecule`` as :class:`ase.Atoms` (Å)."""


def as_structures(structures) -> tuple[list, bool]:
    """``(list of ase.Atoms, whether one structure was given)`` from what :meth:`Predictor.predict` takes."""
    one = _as_atoms(structures)
    if one is not None:
        return [one], True
    if isinstance(structures, Sequence) and not isinstance(structures, (str, bytes)):
        images = [_as_atoms(structure) for structure in structures]
        if all(atoms is not None for atoms in images):
            return images, False
        structures = next(s for s, atoms in zip(structures, images) if atoms is None)
    raise TypeError(
        f"predict takes an ase.Atoms or a pair (atomic numbers [n], positions [n, 3] in Å), or a list of them, "
        f"not {type(structures).__name__} {structures!r:.60}; for a SMILES, build a structure first "
        "(e.g. zoo sample --smiles ... or RDKit) and pass its Atoms"
    )


def _as_atoms(structure):
    """``structure`` as an :class:`ase.Atoms` if it is one or an ``(atomic numbers, positions)`` pair, else None."""
    from ase import Atoms

    if isinstance(structure, Atoms):
        return structure
    if not isinstance(structure, (tuple, list)) or len(structure) != 2 or isinstance(structure[0], Atoms):
        return None
    try:
        numbers, positions = np.asarray(structure[0]), np.asarray(structure[1], dtype=np.float64)
    except (TypeError, ValueError):  # ragged: a list of two pairs, say
        return None
    if numbers.ndim != 1 or numbers.dtype.kind not in "iuf" or positions.shape != (len(numbers), 3):
        return None
    return Atoms(numbers=numbers, positions=positions)


def split_structures(outputs: dict[str, torch.Tensor], batch, units: dict[str, str]) -> list[dict[str, Any]]:
    """The ``units`` keys of a batch's ``outputs``, one dict per structure: the per-atom keys of
    :data:`zoo.data.keys.PER_ATOM` as ``[n_atoms, ...]`` float64 arrays, the others as floats
    (or float64 arrays, for several values per structure)."""
    ranges, n = atom_ranges(batch), n_structures(batch)
    columns = {key: outputs[key].detach().double().cpu().numpy() for key in units}
    results = [{} for _ in range(n)]
    for key, values in columns.items():
        if key in keys.PER_ATOM:
            for result, (start, end) in zip(results, ranges):
                result[key] = values[start:end]
        else:
            rows = values.reshape(n, -1)
            for result, row in zip(results, rows):
                result[key] = float(row[0]) if row.size == 1 else row
    return results


def predict_structures(model: Predictor, structures, batch_size: int = BATCH_SIZE,
                       prepare: Callable[[Any], StructureInput] | None = None,
                       finish: Callable[..., list[dict[str, Any]]] | None = None):
    """:meth:`Predictor.predict` of ``model``: the loop every family shares.

    ``prepare`` and ``finish`` replace the model's :meth:`~Predictor.structure_input` and
    :meth:`~Predictor.structure_results`, for a family whose ``predict`` takes options (bound
    with :func:`functools.partial`). The model runs in eval mode and gets its own mode back.
    """
    from torch_geometric.data import Batch

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a whole number >= 1, got {batch_size!r}")
    images, single = as_structures(structures)
    prepare = prepare or model.structure_input
    finish = finish or model.structure_results
    domain = TrainingDomain.of(model)
    device = next(model.parameters()).device
    results, outliers = [], []
    training = model.training
    if training:  # eval() walks every submodule: milliseconds an MD step would pay each call
        model.eval()
    try:
        for start in range(0, len(images), batch_size):
            inputs = []
            for number, atoms in enumerate(images[start:start + batch_size], start):
                try:  # refuses atoms on top of each other, on which a model returns NaN or nonsense
                    inputs.append(prepare(atoms))
                except ValueError as error:
                    raise ValueError(f"structure {number}: {error}") from error
            batch = Batch.from_data_list([item.data for item in inputs]).to(device)
            with torch.no_grad():
                outputs = model(batch)  # first: its forward (and its hooks) refuse unknown elements
            if domain is not None:
                outliers += domain.outliers(batch, first=start)
            results += finish(outputs, batch, inputs)
    finally:
        if training:
            model.train()
    TrainingDomain.warn(outliers, stacklevel=3)
    return results[0] if single else results
