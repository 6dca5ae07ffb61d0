"""DeNS, denoising non-equilibrium structures (Liao et al., TMLR 2024), for any zoo force field.

- :class:`DeNS`: the training recipe (which structures and atoms to corrupt, sigma, loss weight
  and its linear schedule), an :class:`~zoo.losses.AuxiliaryLoss`; :class:`zoo.tasks.ForceFieldTask`
  switches it on with ``dens=``;
- :class:`DenoisingForward`: the forward pass of a DeNS training step (predictions on the
  corrupted structures, the predicted noise and the corruption);
- :func:`corrupt` / :class:`Corruption`: one draw of noise and the normalised target noise / sigma;
- :class:`ForceEncoding`: the original forces of corrupted atoms as equivariant node inputs;
- :class:`DenoisingHead`: the equivariant l=1 head that predicts the noise.
"""

from zoo.dens._corruption import Corruption, corrupt
from zoo.dens._dens import DeNS, DenoisingForward
from zoo.dens._encoding import ForceEncoding
from zoo.dens._head import DenoisingHead

__all__ = ["Corruption", "DeNS", "DenoisingForward", "DenoisingHead", "ForceEncoding", "corrupt"]
