import numpy as np
import pytest
import torch
from ase.build import molecule
from torch_geometric.data import Batch

from zoo.data import AtomicData, keys
from zoo.dens import Corruption, DenoisingForward, DenoisingHead, DeNS, ForceEncoding, corrupt
from zoo.losses import Forward, Output, Progress, Step
from zoo.models import EquivariantBackbone, ForceFieldModel
from zoo.testing import assert_equivariant

EXTRA = "1x0e+1x1o+1x2e"


def _ethanols(n=2, dtype=torch.float64, seed=0):
    rng = np.random.default_rng(seed)
    data = []
    for _ in range(n):
        atoms = molecule("CH3CH2OH")
        atoms.positions += 0.1 * rng.standard_normal(atoms.positions.shape)
        data.append(AtomicData.from_ase(atoms, dtype=dtype, properties={
            keys.ENERGY: -1.0, keys.FORCES: rng.standard_normal((len(atoms), 3))}))
    return Batch.from_data_list(data)


def _model(extra=EXTRA, **kwargs):
    backbone = EquivariantBackbone(["H", "C", "O"], channels=8, l_max=1, num_layers=1, cutoff=4.0,
                                   radial_hidden=16, extra_node_irreps=extra, **kwargs)
    return ForceFieldModel(backbone, hidden=16)


@pytest.mark.parametrize("bounded", [False, True])
def test_force_encoding_equivariant_and_zero_for_uncorrupted_atoms(bounded):
    torch.manual_seed(0)
    encoding = ForceEncoding("4x0e+4x1o+4x2e", l_max=2, force_scale=2.0, bounded=bounded).double()
    batch = _ethanols()
    mask = torch.arange(batch.num_nodes) % 3 == 0
    forces = batch[keys.FORCES].clone()
    forces[1] = 0.0  # a zero force gives zeros, not NaN
    features = encoding(forces, mask)
    assert torch.isfinite(features).all()
    assert (features[~mask] == 0).all() and (features[mask].abs().sum(dim=1) > 0).all()
    # the encoding rotates with the forces: an equivariant function of the (rotated) force inputs
    assert_equivariant(lambda d, f: encoding(f, mask), batch, encoding.irreps_out, [(forces, "1x1o")],
                       permutation=False, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="cannot reach"):
        ForceEncoding("4x1e", l_max=2)


def test_bounded_force_encoding_keeps_small_encodings_and_caps_large_ones():
    torch.manual_seed(0)
    free = ForceEncoding("4x0e+4x1o+4x2e", l_max=2, bounded=False).double()
    bounded = ForceEncoding("4x0e+4x1o+4x2e", l_max=2).double()  # the default
    bounded.load_state_dict(free.state_dict())
    forces = torch.randn(20, 3, dtype=torch.float64)
    mask = torch.ones(20, dtype=torch.bool)
    for scale in (1e-3, 1e3):
        rms_free = free(forces * scale, mask).pow(2).mean(dim=-1).sqrt()
        rms_bounded = bounded(forces * scale, mask).pow(2).mean(dim=-1).sqrt()
        if scale < 1:  # small: unchanged to second order
            torch.testing.assert_close(rms_bounded, rms_free, rtol=1e-5, atol=0)
        else:  # large: the free encoding grows with the force, the bounded one stays below one
            assert (rms_free > 100).all() and (rms_bounded < 1).all() and (rms_bounded > 0.99).all()


def test_denoising_head_is_equivariant():
    torch.manual_seed(0)
    model = _model().double()
    head = DenoisingHead(model.backbone.irreps_out).double()
    assert_equivariant(lambda d: head(model.backbone(d).node_features), _ethanols(), "1x1o",
                       generator=torch.Generator().manual_seed(1))
    with pytest.raises(ValueError, match="1o"):
        DenoisingHead("8x0e")


def test_corruption_statistics_and_normalised_target():
    # 400 ethanols, 3600 atoms: the rates below are checked to about 4 standard deviations
    batch = Batch.from_data_list([_ethanols(1)[0]] * 400)
    generator = torch.Generator().manual_seed(0)
    c = corrupt(batch, probability=0.5, corrupt_ratio=0.25, sigma=0.05, generator=generator)
    assert isinstance(c, Corruption)
    assert c.denoised.float().mean().item() == pytest.approx(0.5, abs=0.1)
    assert c.mask.float().mean().item() == pytest.approx(0.125, abs=0.025)
    assert not c.mask[~c.denoised[batch.batch]].any()  # only atoms of denoised structures
    displacement = c.positions - batch.pos
    torch.testing.assert_close(displacement, c.target * 0.05)  # the target is noise / sigma
    assert (displacement[~c.mask] == 0).all()
    assert c.target[c.mask].std().item() == pytest.approx(1.0, abs=0.1)
    assert displacement[c.mask].std().item() == pytest.approx(0.05, abs=0.005)

    per_batch = [corrupt(batch, probability=0.5, corrupt_ratio=1.0, per_batch=True, generator=generator)
                 for _ in range(10)]
    assert all(c.denoised.all() or not c.denoised.any() for c in per_batch)
    several = corrupt(batch, probability=1.0, corrupt_ratio=1.0, sigma=[0.01, 0.1], generator=generator)
    sigmas = several.sigma.unique()
    torch.testing.assert_close(sigmas, torch.tensor([0.01, 0.1], dtype=torch.float64))
    torch.testing.assert_close(several.positions - batch.pos, several.target * several.sigma[:, None])
    with pytest.raises(ValueError, match="sigma"):
        corrupt(batch, sigma=[])
    with pytest.raises(ValueError, match="probability"):
        DeNS(probability=1.5)


def test_loss_weight_schedule():
    dens = DeNS()  # the MD17 recipe: 5 -> 0, linear
    assert [dens.weight(Progress(fraction=p)) for p in (0.0, 0.5, 1.0, 2.0)] == [5.0, 2.5, 0.0, 0.0]


@pytest.mark.parametrize("extra", [EXTRA, "4x0e+2x1o"])  # any extra irreps the encoding can reach
def test_attach_and_forward(extra):
    torch.manual_seed(0)
    with pytest.raises(ValueError, match="extra_node_irreps"):
        DeNS().attach(_model(extra=None))
    model = _model(extra).double()
    dens = DeNS(probability=1.0, corrupt_ratio=0.5).attach(model)
    assert dens.encoding.irreps_out == model.backbone.irreps_extra
    batch = _ethanols()
    corruption = dens.corrupt(batch, torch.Generator().manual_seed(0))
    forward = dens.predict(model, batch, corruption)
    assert isinstance(forward, DenoisingForward) and set(forward.predictions) == {keys.ENERGY, keys.FORCES}
    assert torch.equal(forward.atoms, ~corruption.mask)  # the outputs train on the uncorrupted atoms
    loss = dens(Step(model, batch, forward, "train"))
    assert loss.ndim == 0
    # the predictions are those of the corrupted structures, with the forces encoded
    plain = model(batch)
    assert not torch.allclose(forward.predictions[keys.ENERGY], plain[keys.ENERGY])
    loss.backward()
    assert all(p.grad is not None for p in dens.parameters())
    with pytest.raises(TypeError, match="DeNS.predict"):
        dens(Step(model, batch, Forward(plain), "train"))



def test_unsupervised_corrupted_structures_train_the_denoising_loss_alone():
    """``supervise_corrupted=False``: a structure with a corrupted atom gives neither its energy nor
    any force to the outputs; one chosen for denoising whose atoms all stayed put still does."""
    model = _model().double()
    dens = DeNS(supervise_corrupted=False).attach(model)
    batch = _ethanols(3)
    n = len(batch.pos) // 3
    mask = torch.zeros(3 * n, dtype=torch.bool)
    mask[[1, 4]] = True  # two atoms of the first structure
    noise = torch.zeros(3 * n, 3, dtype=torch.float64)
    noise[mask] = 0.05
    corruption = Corruption(batch.pos + noise, mask, noise / 0.05, torch.full((3 * n,), 0.05, dtype=torch.float64),
                            torch.tensor([True, True, False]))
    forward = dens.predict(model, batch, corruption)
    assert forward.structures.tolist() == [False, True, True]
    assert forward.atoms.tolist() == [False] * n + [True] * (2 * n)
    energy, forces = Output(name=keys.ENERGY), Output(name=keys.FORCES)
    assert len(energy.select(batch, forward.predictions, forward.atoms, forward.structures)[0]) == 2
    assert len(forces.select(batch, forward.predictions, forward.atoms, forward.structures)[0]) == 2 * n
    supervised = DeNS().attach(model).predict(model, batch, corruption)  # the paper's recipe
    assert supervised.structures is None and len(energy.select(batch, supervised.predictions, supervised.atoms)[0]) == 3


def test_augmented_dens_trains_every_label_on_the_uncorrupted_batch_and_denoises_the_copies():
    model = _model().double()
    with pytest.raises(ValueError, match="supervise_corrupted=False"):
        DeNS(augment=True)
    dens = DeNS(probability=1.0, augment=True, supervise_corrupted=False).attach(model)
    batch = _ethanols(3)
    corruption = dens.corrupt(batch, torch.Generator().manual_seed(0))
    assert corruption.mask.any()
    forward = dens.predict(model, batch, corruption)
    assert forward.atoms is None and forward.structures is None  # nothing gives up its labels
    plain = model(batch)
    for key in (keys.ENERGY, keys.FORCES):
        torch.testing.assert_close(forward.predictions[key], plain[key])
    # the noise is predicted from the corrupted copies: the replacing recipe predicts the same
    replacing = DeNS(probability=1.0, supervise_corrupted=False).attach(model)
    replacing.load_state_dict(dens.state_dict())
    torch.testing.assert_close(forward.noise, replacing.predict(model, batch, corruption).noise)
    loss = dens(Step(model, batch, forward, "train"))
    loss.backward()
    assert all(p.grad is not None for p in dens.parameters())

def _ambiguous_pairs():
    """Two H2 'originals' at 0.6 and 1.0 Å that both become the same 0.8 Å structure when atom 1
    moves by +0.2 or -0.2 Å: the noise is only known through the original forces (harmonic,
    equilibrium 0.8 Å), which point the other way in each."""
    data = []
    for d, sign in ((0.6, 1.0), (1.0, -1.0)):
        force = -5.0 * (d - 0.8)  # on atom 1 along x
        data.append(AtomicData.from_arrays([1, 1], [[0, 0, 0], [d, 0, 0]], dtype=torch.float64,
                                           forces=[[-force, 0, 0], [force, 0, 0]], energy=0.0))
    batch = Batch.from_data_list(data)
    sigma = 0.2
    target = torch.tensor([[0, 0, 0], [1.0, 0, 0], [0, 0, 0], [-1.0, 0, 0]], dtype=torch.float64)
    mask = torch.tensor([False, True, False, True])
    positions = batch.pos + sigma * target
    torch.testing.assert_close(positions[:2], positions[2:])  # one corrupted structure, two originals
    return batch, Corruption(positions, mask, target, torch.full((4,), sigma, dtype=torch.float64),
                             torch.tensor([True, True]))


def _final_denoising_loss(encode_forces: bool, steps: int = 80) -> float:
    torch.manual_seed(0)
    backbone = EquivariantBackbone(["H"], channels=8, l_max=1, num_layers=1, cutoff=3.0, radial_hidden=16,
                                   extra_node_irreps="1x0e+1x1o")
    model = ForceFieldModel(backbone, hidden=16).double()
    dens = DeNS(encode_forces=encode_forces, l_max=1).attach(model)
    batch, corruption = _ambiguous_pairs()
    optimizer = torch.optim.Adam([*model.parameters(), *dens.parameters()], lr=1e-2)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = dens(Step(model, batch, dens.predict(model, batch, corruption), "train"))
        loss.backward()
        optimizer.step()
    return loss.item()


def test_force_encoding_resolves_ambiguous_targets():
    with_forces = _final_denoising_loss(True)
    without = _final_denoising_loss(False)
    # without forces the best prediction is the mean target (0): the MSE floor is 1/3
    assert without > 0.3
    assert with_forces < 0.05
