"""Backbones and the heads that turn their features into predictions."""

from zoo.models._compile import compile_for_inference
from zoo.models._diffusion import DiffusionSchedule
from zoo.models._domain import ExtrapolationWarning, TrainingDomain
from zoo.models._export import export_inputs, export_model
from zoo.models._inference import Predictor, StructureGenerator
from zoo.models._rescale import ReferenceEnergies, RescaledModel, ScaleShift
from zoo.models.backbone import BackboneOutput, EquivariantBackbone
from zoo.models.consistency import ConsistencyModel
from zoo.models.force_field import ForceFieldModel
from zoo.models.hamiltonian import HamiltonianModel
from zoo.models.mpnn import MPNN, EdgeNetwork
from zoo.models.property import PropertyModel

__all__ = ["BackboneOutput", "ConsistencyModel", "DiffusionSchedule", "EdgeNetwork", "EquivariantBackbone",
           "ExtrapolationWarning", "ForceFieldModel", "HamiltonianModel", "MPNN", "Predictor", "PropertyModel",
           "ReferenceEnergies", "RescaledModel", "ScaleShift", "StructureGenerator", "TrainingDomain",
           "compile_for_inference", "export_inputs", "export_model"]
