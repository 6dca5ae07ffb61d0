"""Checks of the data a fine-tune starts on, against the pretrained model it starts from."""

from __future__ import annotations

import torch

from zoo.data import Statistics, keys
from zoo.models import ForceFieldModel

#: Ratio of the force spread of a fine-tuning set to the pretrained model's beyond which their units
#: cannot be the same: MD forces of molecules spread by 0.3-3 eV/Å at any level of theory, while
#: forces in Hartree/Bohr are 51x smaller and in kcal/mol/Å 23x larger.
FORCE_SCALE_RATIO = 10.0
#: Mean energy per atom, eV, by which a fine-tuning set may differ from what the pretrained model's
#: reference energies and shift give before it cannot be at the pretrained level of theory.
ENERGY_OFFSET_PER_ATOM = 0.5


def check_fine_tuning_data(model: torch.nn.Module, statistics: Statistics, structures, keep_statistics: bool,
                           name: str) -> None:
    """Refuse a fine-tuning set whose forces are in other units than the pretrained model's, or,
    when the pretrained statistics are kept, whose energies are at another level of theory.

    Called with the pretrained weights loaded and before the new statistics are set. The forces'
    spread is compared with the pretrained model's force scale; with ``keep_statistics`` the mean
    energy per atom left after the pretrained reference energies and shift is compared with zero.

    Raises:
        ValueError: naming the measure and the fix.
    """
    if not isinstance(model, ForceFieldModel):
        return
    pretrained_scale = float(model.rescale.scale[0])
    forces_std = statistics.std(keys.FORCES)
    if forces_std is not None and pretrained_scale != 1.0:
        ratio = forces_std / pretrained_scale
        if not 1 / FORCE_SCALE_RATIO < ratio < FORCE_SCALE_RATIO:
            raise ValueError(
                f"the fine-tuning forces spread by {forces_std:.3g} against {pretrained_scale:.3g} eV/Å in "
                f"{name!r}'s training data ({ratio:.3g}x): are they in eV/Å? zoo reads ASE's units (eV, Å); "
                "convert Hartree/Bohr (x51.42) or kcal/mol/Å (/23.06) before fine-tuning")
    if keep_statistics and structures is not None and len(structures):
        offsets = []
        for data in structures.raw:
            z = data[keys.ATOMIC_NUMBERS]
            predicted = model.reference_energies(z)[:, 0].sum() + model.rescale.shift[0] * z.numel()
            offsets.append(float(data[keys.ENERGY].reshape(())) - float(predicted))
        per_atom = sum(offsets) / sum(int(data[keys.ATOMIC_NUMBERS].numel()) for data in structures.raw)
        if abs(per_atom) > ENERGY_OFFSET_PER_ATOM:
            raise ValueError(
                f"the fine-tuning energies lie {per_atom:+.3g} eV per atom from what {name!r}'s reference energies "
                "give: not its level of theory (or not in eV). Keeping the pretrained statistics "
                "(keep_pretrained_statistics) is for data at the same level; set it false to re-fit them")
