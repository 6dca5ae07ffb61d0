"""Optimal design: which unlabelled structures to label first.

Selection works on a feature matrix ``X`` [N, d] (one row per candidate structure), from a
model's last-layer features (:func:`model_features`) or a descriptor (:func:`descriptor_features`):

- :func:`greedy_d_optimal`: greedy maximisation of ``log det(X_Sᵀ X_S + λI)``;
- :func:`maxvol`: maxvol / Fedorov exchange to a locally maximal volume;
- :func:`extrapolation_grade`: Podryabinkin–Shapeev ``γ`` of candidates w.r.t. a selection;
- :func:`farthest_point`, :func:`random_selection`: baselines.

``zoo select`` (:mod:`zoo.selection.commands`) runs them on a file of structures.
"""

from zoo.selection._doptimal import greedy_d_optimal, log_det_information
from zoo.selection._features import DESCRIPTORS, descriptor_features, model_features
from zoo.selection._fps import farthest_point, random_selection
from zoo.selection._maxvol import extrapolation_grade, maxvol

__all__ = [
    "DESCRIPTORS",
    "descriptor_features",
    "extrapolation_grade",
    "farthest_point",
    "greedy_d_optimal",
    "log_det_information",
    "maxvol",
    "model_features",
    "random_selection",
]
