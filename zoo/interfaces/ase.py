"""Any zoo model with a potential energy as an ASE calculator (eV, eV/Å), with batched inference."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes

from zoo.data import keys
from zoo.models import Predictor
from zoo.models._inference import BATCH_SIZE


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
