import pytest
import torch

from zoo.data import AtomicData, AtomicDataset, RadiusGraph, keys
from zoo.data.dataset import check_consistent_keys, resolve_dtype


def _water(energy=-1.0):
    return AtomicData.from_arrays([8, 1, 1], [[0, 0, 0.12], [0, 0.76, -0.48], [0, -0.76, -0.48]], energy=energy)


def test_transform_runs_on_a_copy_and_subsets_share_metadata():
    ds = AtomicDataset([_water(-1.0), _water(-2.0)], transform=RadiusGraph(2.0), metadata={"source": "hand"})
    assert keys.EDGE_INDEX in ds[0]
    assert keys.EDGE_INDEX not in ds.raw[0]  # stored data unchanged
    sub = ds.subset([1])
    assert len(sub) == 1 and sub[0][keys.ENERGY].item() == -2.0 and sub.metadata["source"] == "hand"
    assert keys.EDGE_INDEX not in ds.subset([1], transform=None)[0]
    assert ds.n_atoms().tolist() == [3, 3]
    assert "energy" in ds.keys()
    with pytest.raises(IndexError, match="out of range"):
        ds.subset([2])


def test_empty_dataset_is_an_error_when_required():
    with pytest.raises(ValueError, match="dataset is empty: read from x.xyz"):
        AtomicDataset([], metadata={"source": "x.xyz"}).require_nonempty()
    assert len(AtomicDataset([_water()]).require_nonempty()) == 1


def test_consistent_keys_and_dtypes():
    with pytest.raises(ValueError, match="structure 1 has different properties.*missing \\['energy'\\]"):
        check_consistent_keys([_water(), AtomicData.from_arrays([1], [[0, 0, 0]])], "test")
    assert resolve_dtype("float64") is torch.float64
    assert resolve_dtype(None) is torch.get_default_dtype()
    with pytest.raises(ValueError, match="floating-point"):
        resolve_dtype("int64")
