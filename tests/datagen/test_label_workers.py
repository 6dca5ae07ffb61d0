"""``zoo label`` on Dask worker processes: the same labels as in this process, even when a worker dies.

Dask's workers import this module to run :func:`dies_once_on_ammonia`, so it imports only what a
worker needs at module level (``zoo.datagen.labelling``, which imports torch, is imported in the test).
"""

import functools
import json
import os
import sys
from pathlib import Path

import cloudpickle
import numpy as np
import pytest
from ase import Atoms

pytest.importorskip("pyscf")

from zoo.datagen.jobs import Workers  # noqa: E402
from zoo.datagen.label_task import label_structure  # noqa: E402
from zoo.qc.level import LevelOfTheory  # noqa: E402

# by value: the workers need not find this module on their path (and import it if they do)
cloudpickle.register_pickle_by_value(sys.modules[__name__])

RHF = LevelOfTheory(method="rhf", xc=None, basis="sto-3g")
MOLECULES = [
    Atoms("OH2", positions=[[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, -0.757, -0.469]]),  # overlapping: a failure
    Atoms("OH2", positions=[[0.0, 0.0, 0.117], [0.0, 0.757, -0.469], [0.05, -0.757, -0.469]]),
    Atoms("NH3", positions=[[0.0, 0.0, 0.11], [0.0, 0.94, -0.26], [0.81, -0.47, -0.26], [-0.81, -0.47, -0.26]]),
    Atoms("CH4", positions=[[0, 0, 0], [0.63, 0.63, 0.63], [-0.63, -0.63, 0.63], [-0.63, 0.63, -0.63],
                            [0.63, -0.63, -0.63]]),
]


def dies_once_on_ammonia(marker: str, atoms, *args):
    """:func:`~zoo.datagen.label_task.label_structure`, except that the first worker to meet ammonia dies
    at once, as if killed with ``kill -9`` (the marker file remembers that one did)."""
    if atoms.get_chemical_formula() == "H3N" and not Path(marker).exists():
        Path(marker).touch()
        os._exit(1)
    return label_structure(atoms, *args)


@pytest.mark.slow
def test_dask_workers_label_like_this_process_even_when_one_dies(tmp_path, monkeypatch):
    from zoo.datagen import labelling
    from zoo.datagen.files import read_structures

    serial = labelling.label(MOLECULES, RHF, tmp_path / "serial.extxyz", properties=["energy", "forces"],
                             progress=False, workers=Workers(0))
    marker = tmp_path / "a worker died"
    monkeypatch.setattr(labelling, "label_structure", functools.partial(dies_once_on_ammonia, str(marker)))
    summary = labelling.label(MOLECULES, RHF, tmp_path / "dask.extxyz", properties=["energy", "forces"],
                              progress=False, workers=Workers(2))
    assert marker.exists()  # the worker labelling ammonia died, and ammonia was labelled all the same
    assert (summary["labelled"], summary["failed"]) == (serial["labelled"], serial["failed"]) == (3, 1)
    (failure,) = [json.loads(line) for line in summary["failures"].read_text().splitlines()]
    assert failure["index"] == 0 and "overlaps" in failure["reason"]  # the first frame, recorded like any other
    ours, theirs = (read_structures(tmp_path / f"{name}.extxyz") for name in ("dask", "serial"))
    assert [f.info["source_index"] for f in ours] == [f.info["source_index"] for f in theirs] == [1, 2, 3]
    for a, b in zip(ours, theirs):
        assert abs(a.get_potential_energy() - b.get_potential_energy()) < 1e-7
        np.testing.assert_allclose(a.get_forces(), b.get_forces(), atol=1e-5)
