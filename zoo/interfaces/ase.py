"""Any zoo energy model as an ASE calculator (eV, eV/Å), with batched inference for many structures."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes

from zoo.data import AtomicData, keys
from zoo.models import TrainingDomain


class ZooCalculator(Calculator):
    """ASE calculator for a model mapping a batch to ``{"energy": [n], "forces": [n_atoms, 3]}``
    (a :class:`~zoo.models.ForceFieldModel`, or a task wrapping one), in eV and eV/Å.

    Use :meth:`~zoo.models.ForceFieldModel.as_calculator`::

        atoms.calc = model.as_calculator()
        atoms.get_potential_energy(), atoms.get_forces()
        results = atoms.calc.predict(list_of_atoms, batch_size=64)  # many structures at once

    The calculator evaluates ``model`` itself when it is already on ``device`` in ``dtype``, so
    later changes to its weights show; otherwise it evaluates a copy converted to them, and the
    caller's model is neither moved nor cast (``as_calculator(dtype=torch.float64)`` on a float32
    model, or the reverse). The model runs in eval mode during a calculation and gets its own
    mode back after it. A model with a :class:`~zoo.models.TrainingDomain` warns
    (:class:`~zoo.models.ExtrapolationWarning`, once per call) about structures outside it.

    Args:
        model: the model (or task).
        device: where to run (default: where the model's parameters are).
        dtype: floating dtype of the calculation (default: the model's parameters').
    """

    implemented_properties: ClassVar[list[str]] = ["energy", "free_energy", "forces"]

    def __init__(self, model: torch.nn.Module, device: str | torch.device | None = None,
                 dtype: torch.dtype | None = None, **kwargs):
        super().__init__(**kwargs)
        parameter = next(model.parameters())
        self.device = torch.device(device) if device is not None else parameter.device
        self.dtype = dtype or parameter.dtype
        if (parameter.device, parameter.dtype) != (self.device, self.dtype):
            model = copy.deepcopy(model).to(self.device, self.dtype)
        self.model = model
        self.domain = TrainingDomain.of(model)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        (result,) = self.predict([self.atoms], batch_size=1)
        self.results = {"energy": result["energy"], "free_energy": result["energy"], "forces": result["forces"]}

    def predict(self, images: Sequence, batch_size: int = 32) -> list[dict[str, np.ndarray | float]]:
        """Energy (eV) and forces (eV/Å) of many :class:`ase.Atoms`, ``batch_size`` per model call.

        Returns one ``{"energy": float, "forces": [n_atoms, 3] array}`` per structure, in order.
        Structures outside the model's training domain get one warning, naming them by position.

        Raises:
            ValueError: a structure (named by its position) has two atoms closer than
                :data:`zoo.data.neighbors.MIN_INTERATOMIC_DISTANCE`, or NaN positions.
        """
        from torch_geometric.data import Batch

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        results, outliers = [], []
        training = self.model.training
        self.model.eval()
        try:
            for start in range(0, len(images), batch_size):
                chunk = []
                for number, atoms in enumerate(images[start:start + batch_size], start):
                    try:  # refuses atoms on top of each other, on which a model returns NaN or nonsense
                        chunk.append(AtomicData.from_ase(atoms, dtype=self.dtype))
                    except ValueError as error:
                        raise ValueError(f"structure {number}: {error}") from error
                batch = Batch.from_data_list(chunk).to(self.device)
                if self.domain is not None:
                    outliers += self.domain.outliers(batch, first=start)
                with torch.no_grad():
                    out = self.model(batch)
                energies = out[keys.ENERGY].detach().double().cpu().numpy().reshape(-1)
                forces = out[keys.FORCES].detach().double().cpu().numpy()
                offsets = np.cumsum([0] + [len(d[keys.ATOMIC_NUMBERS]) for d in chunk])
                results += [
                    {"energy": float(energies[i]), "forces": forces[offsets[i]:offsets[i + 1]]}
                    for i in range(len(chunk))
                ]
        finally:
            self.model.train(training)
        TrainingDomain.warn(outliers)
        return results
