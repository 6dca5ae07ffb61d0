import pytest
import torch
from ase.build import molecule
from torch_geometric.data import Batch

from zoo.data import AtomicData, RadiusGraph, keys
from zoo.testing import assert_equivariant, random_permutation, random_rotation, transform, wigner_D


def _batch():
    data = [RadiusGraph(3.0)(AtomicData.from_ase(molecule(m), {keys.FORCES: torch.randn(len(molecule(m)), 3)},
                                                 dtype=torch.float64)) for m in ("CH3CH2OH", "H2O")]
    return Batch.from_data_list(data)


@pytest.mark.parametrize("improper", [False, True])
def test_random_rotation(improper):
    rotation = random_rotation(torch.float32, improper, torch.Generator().manual_seed(0))
    assert rotation.dtype == torch.float32
    assert torch.allclose(rotation @ rotation.T, torch.eye(3), atol=1e-6)
    assert torch.linalg.det(rotation).item() == pytest.approx(-1.0 if improper else 1.0, abs=1e-5)


def test_wigner_D_is_accurate_in_float64():
    rotation = random_rotation()
    d = wigner_D("1x2e", rotation)
    assert torch.allclose(d @ d.T, torch.eye(5, dtype=torch.float64), atol=1e-13)


def test_transform_moves_everything_consistently():
    batch = _batch()
    rotation, shift = random_rotation(), torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    perm = random_permutation(batch, torch.Generator().manual_seed(0))
    moved = transform(batch, rotation, shift, perm)
    assert torch.equal(moved.batch, batch.batch)  # atoms stay within their structure
    assert torch.allclose(moved.pos, (batch.pos @ rotation.T + shift)[perm])
    assert torch.allclose(moved.forces, (batch.forces @ rotation.T)[perm])
    assert torch.equal(moved.z, batch.z[perm])
    # the relabelled edges join the same atoms
    old = batch.pos[batch.edge_index[0]] - batch.pos[batch.edge_index[1]]
    new = moved.pos[moved.edge_index[0]] - moved.pos[moved.edge_index[1]]
    assert torch.allclose(new, old @ rotation.T)
    assert torch.equal(batch.pos, _batch().pos)  # the original is untouched


def test_assert_equivariant_accepts_equivariant_functions():
    batch = _batch()
    centred = lambda d: d.pos - d.pos.mean(dim=0)  # noqa: E731  (vectors, e3nn 0.6 basis is xyz)
    assert_equivariant(centred, batch, "1x1o", permutation=False)
    assert_equivariant(lambda d: d.forces, batch, "1x1o")
    per_structure = lambda d: torch.stack([d.pos[d.batch == s].var(dim=0).sum() for s in range(2)])[:, None]  # noqa: E731
    assert_equivariant(per_structure, batch, "0e", per_atom=False)


def test_assert_equivariant_catches_violations():
    batch = _batch()
    with pytest.raises(AssertionError, match="translation"):
        assert_equivariant(lambda d: d.pos, batch, "1x1o")
    with pytest.raises(AssertionError, match="reflection"):
        assert_equivariant(lambda d: d.forces, batch, "1x1e")
    with pytest.raises(AssertionError, match="permutation"):
        assert_equivariant(lambda d: d.forces.flip(0), batch, "1x1o")


def test_node_inputs_are_transformed():
    batch = _batch()
    vectors = torch.randn(batch.num_nodes, 3, dtype=torch.float64)
    assert_equivariant(lambda d, v: torch.cross(v, d.forces, dim=-1), batch, "1x1e", [(vectors, "1x1o")])
