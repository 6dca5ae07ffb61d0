import dataclasses

import h5py
import numpy as np
import pytest
import torch
from torch_geometric.loader import DataLoader

from zoo.data import AtomicData, keys
from zoo.data.readers import HamiltonianMetadata, read_hamiltonian_h5, read_hamiltonian_metadata, write_hamiltonian_h5
from zoo.qc import LevelOfTheory

LEVEL = LevelOfTheory(xc="b3lyp5", basis="def2-svp", grid_level=3)
META = HamiltonianMetadata(LEVEL, pyscf_version="2.8.0")


def _at(level=LEVEL, pyscf_version="2.8.0", **changes):
    """META with the level of theory changed."""
    return HamiltonianMetadata(dataclasses.replace(level, **changes), pyscf_version)


def _record(n_atoms, n_ao, seed, **extra):
    rng = np.random.default_rng(seed)
    h = rng.normal(size=(n_ao, n_ao))
    record = {
        "atomic_numbers": np.array([8] + [1] * (n_atoms - 1)),
        "positions": rng.normal(size=(n_atoms, 3)),
        "hamiltonian": h + h.T,
        "overlap": np.eye(n_ao),
        "density_matrix": rng.normal(size=(n_ao, n_ao)),
        "orbital_energies": np.sort(rng.normal(size=n_ao)),
    }
    record.update(extra)
    return record


def test_round_trip_with_metadata(tmp_path):
    path = tmp_path / "water.h5"
    records = [_record(3, 4, 0, energy=-2070.5, forces=np.ones((3, 3))), _record(3, 4, 1, energy=-2070.4,
                                                                               forces=np.zeros((3, 3)))]
    assert write_hamiltonian_h5(path, records, META) == 2
    assert not (tmp_path / "water.h5.tmp").exists()
    with h5py.File(path) as handle:
        assert handle.attrs["format"] == "zoo-hamiltonian" and handle.attrs["format_version"] == 1
        assert handle.attrs["xc"] == "b3lyp5" and handle.attrs["grid_level"] == 3
        assert sorted(handle["structures"]) == ["000000", "000001"]
        assert handle["structures/000001/hamiltonian"].shape == (4, 4)
    ds = read_hamiltonian_h5(path, expect=META, dtype=torch.float64)
    assert ds.metadata["hamiltonian"] == META
    assert read_hamiltonian_metadata(path) == META
    second = ds[1]
    assert second[keys.HAMILTONIAN].shape == (16,)
    assert np.array_equal(second[keys.HAMILTONIAN].numpy(), records[1]["hamiltonian"].reshape(-1))
    assert second[keys.N_AO].tolist() == [4]
    assert second[keys.N_ELECTRONS].tolist() == [10]
    assert second[keys.ORBITAL_ENERGIES].shape == (4,)
    assert second[keys.ENERGY].item() == pytest.approx(-2070.4)
    batch = next(iter(DataLoader(ds, batch_size=2)))
    assert batch[keys.OVERLAP].shape == (32,) and batch[keys.N_AO].tolist() == [4, 4]


def test_partial_records_and_atomic_data_records(tmp_path):
    path = tmp_path / "partial.h5"
    only_fock = {"z": [1, 1], "pos": [[0, 0, 0], [0, 0, 0.74]], "hamiltonian": np.eye(2)}
    data = AtomicData.from_arrays([1, 1], [[0, 0, 0], [0, 0, 0.74]], hamiltonian=2 * np.eye(2), n_ao=2)
    write_hamiltonian_h5(path, [only_fock, data], META)
    ds = read_hamiltonian_h5(path)
    assert keys.OVERLAP not in ds[0] and keys.HAMILTONIAN in ds[0]
    assert ds[1][keys.HAMILTONIAN].tolist() == [2.0, 0.0, 0.0, 2.0]
    with pytest.raises(ValueError, match=r"lacks \['overlap'\]"):
        read_hamiltonian_h5(path, properties=["overlap"])


def test_append_is_resumable_and_checks_metadata(tmp_path):
    path = tmp_path / "labels.h5"
    write_hamiltonian_h5(path, [_record(3, 4, 0)], META, append=True)  # creates
    assert write_hamiltonian_h5(path, [_record(2, 4, 1), _record(3, 4, 2)], META, append=True) == 3
    ds = read_hamiltonian_h5(path, indices=[2, 0])
    assert len(ds) == 2 and ds[0].z.numel() == 3
    other = _at(xc="b3lyp", basis="sto-3g")
    with pytest.raises(ValueError, match="cannot append.*xc.*basis"):
        write_hamiltonian_h5(path, [_record(3, 4, 3)], other, append=True)
    with pytest.raises(FileExistsError, match="append=True"):
        write_hamiltonian_h5(path, [_record(3, 4, 3)], META)
    assert len(read_hamiltonian_h5(path)) == 3  # untouched by the failed writes
    assert write_hamiltonian_h5(path, [_record(3, 4, 3)], META, overwrite=True) == 1


def test_bad_records_leave_no_file(tmp_path):
    path = tmp_path / "bad.h5"
    with pytest.raises(ValueError, match="AO dimensions disagree"):
        write_hamiltonian_h5(path, [_record(3, 4, 0, overlap=np.eye(5))], META)
    with pytest.raises(ValueError, match="unknown entry 'fock'"):
        write_hamiltonian_h5(path, [dict(_record(3, 4, 0), fock=np.eye(4))], META)
    with pytest.raises(ValueError, match="unknown atomic numbers"):
        write_hamiltonian_h5(path, [_record(3, 4, 0, atomic_numbers=np.array([0, 1, 1]))], META)
    assert not path.exists() and not (tmp_path / "bad.h5.tmp").exists()


def test_level_of_theory_mismatch_is_an_error_naming_every_field(tmp_path):
    path = tmp_path / "data.h5"
    write_hamiltonian_h5(path, [_record(3, 4, 0)], META)
    model = _at(xc="b3lyp", grid_level=1, pyscf_version="2.9.0")
    with pytest.raises(ValueError) as error:
        read_hamiltonian_h5(path, expect=model)
    message = str(error.value)
    assert "xc: 'b3lyp' != 'b3lyp5'" in message and "grid_level: 1 != 3" in message
    assert "pyscf_version" not in message  # allowed to differ by default
    old = _at(xc="b3lyp", pyscf_version="2.2.1")
    new = _at(xc="b3lyp", pyscf_version="2.5.0")
    with pytest.raises(ValueError, match="VWN5 before 2.3"):
        old.check_compatible(new)


def test_wrong_format_and_missing_metadata(tmp_path):
    path = tmp_path / "foreign.h5"
    with h5py.File(path, "w") as handle:
        handle.attrs["format"] = "qh9"
    with pytest.raises(ValueError, match="not a zoo Hamiltonian file.*'qh9'"):
        read_hamiltonian_h5(path)
    with h5py.File(path, "w") as handle:
        handle.attrs.update({"format": "zoo-hamiltonian", "format_version": 1, "xc": "b3lyp5"})
    with pytest.raises(ValueError, match=r"lacks the metadata attributes \['basis', 'grid_level'"):
        read_hamiltonian_h5(path)
    text = tmp_path / "text.h5"
    text.write_text("not hdf5")
    with pytest.raises(ValueError, match="cannot open .*text.h5 as HDF5"):
        read_hamiltonian_h5(text)
    with pytest.raises(ValueError, match="ao_convention must be one of"):
        HamiltonianMetadata(LEVEL, pyscf_version="2.8.0", ao_convention="orca")


@pytest.mark.parametrize("level, spelled", [
    (LevelOfTheory(method="rhf", xc=None, basis="sto-3g"), {"xc": "hf", "grid_level": -1}),
    (LevelOfTheory(xc="pbe", basis="def2-svp", grid_level=None, code="orca"),
     {"xc": "pbe", "grid_level": -1, "code": "orca"}),
])
def test_the_file_spells_the_level_of_theory_flat(tmp_path, level, spelled):
    """Hartree-Fock is xc 'hf' and no PySCF grid is grid_level -1 in the file; a LevelOfTheory in memory."""
    path = tmp_path / "level.h5"
    metadata = HamiltonianMetadata(level, pyscf_version="2.8.0")
    write_hamiltonian_h5(path, [_record(3, 4, 0)], metadata)
    with h5py.File(path) as handle:
        attrs = dict(handle.attrs)
    assert {key: attrs[key] for key in spelled} == spelled
    assert ("code" in attrs) == ("code" in spelled)  # PySCF files keep the attributes zoo 0.1 wrote
    assert read_hamiltonian_metadata(path) == metadata


def test_a_zoo_0_1_file_of_another_code_reads_as_such(tmp_path):
    """zoo 0.1 wrote DFT of another code (SchNOrb's ORCA data) with grid_level -1 and no code."""
    path = tmp_path / "orca.h5"
    write_hamiltonian_h5(path, [_record(3, 4, 0)], META)
    with h5py.File(path, "a") as handle:
        handle.attrs.update(xc="pbe", grid_level=-1, pyscf_version="none (ORCA)")
    level = read_hamiltonian_metadata(path).level
    assert (level.xc, level.grid_level, level.code) == ("pbe", None, "unknown")
    with pytest.raises(ValueError, match="PySCF does not reproduce"):
        level.build_scf(None)


def test_a_data_module_joins_files_of_one_level_and_refuses_two_levels(tmp_path):
    """A dataset labelled in parts (two label runs) trains as one source; parts at different levels never mix."""
    from zoo.data import AtomicDataModule

    first, second, other = tmp_path / "small.h5", tmp_path / "small_extra.h5", tmp_path / "other.h5"
    write_hamiltonian_h5(first, [_record(3, 4, 0), _record(3, 4, 1)], META)
    write_hamiltonian_h5(second, [_record(2, 4, 2), _record(3, 4, 3), _record(3, 4, 4)], META)
    write_hamiltonian_h5(other, [_record(3, 4, 5)], _at(basis="sto-3g"))
    module = AtomicDataModule([str(first), str(second)], targets=["hamiltonian"], dtype="float64",
                              split={"method": "random", "sizes": [4, 1]})
    module.setup("fit")
    joined = [*read_hamiltonian_h5(first), *read_hamiltonian_h5(second)]
    assert len(module.train_dataset) + len(module.val_dataset) == 5
    seen = sorted(float(module.train_dataset[i][keys.HAMILTONIAN].sum()) for i in range(len(module.train_dataset)))
    assert seen == pytest.approx(sorted(float(joined[i][keys.HAMILTONIAN].sum()) for i in module.split.train))
    assert module.metadata["hamiltonian"].level == LEVEL and len(module.metadata["sources"]) == 2
    with pytest.raises(ValueError, match=r"other\.h5 cannot be joined to .*small\.h5: .*basis: 'def2-svp' != 'sto-3g'"):
        AtomicDataModule([str(first), str(other)], targets=["hamiltonian"]).setup("fit")
    with pytest.raises(ValueError, match="a path or a list of paths of one level"):
        AtomicDataModule([{"source": str(first)}])
