"""Labelling: units read back by the data layer, failures, resuming, shards (H2 and water, STO-3G)."""

import json
import sys

import numpy as np
import pytest
from ase import Atoms

pytest.importorskip("pyscf")

from zoo.data.readers.ase_io import read_ase  # noqa: E402
from zoo.data.readers.hamiltonian import HamiltonianMetadata, read_hamiltonian_h5  # noqa: E402
from zoo.data.readers.ase_io import write_extxyz  # noqa: E402
from zoo.datagen import jobs, label_files, label_task, labelling  # noqa: E402
from zoo.datagen.files import read_structures  # noqa: E402
from zoo.datagen.jobs import Workers  # noqa: E402
from zoo.qc.level import LevelOfTheory  # noqa: E402

HARTREE_EV, BOHR_A = 27.211386, 0.529177
RHF = LevelOfTheory(method="rhf", xc=None, basis="sto-3g")
SERIAL = Workers(0)  # in this process: the labelling logic without Dask
WATER = Atoms("OH2", positions=[[0.0, 0.0, 0.117], [0.0, 0.757, -0.469], [0.05, -0.757, -0.469]])


def h2(n):
    return [Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.70 + 0.03 * i]]) for i in range(n)]


def pyscf_reference(atoms, level):
    mf = level.build_scf(level.build_mole(atoms.numbers, atoms.positions))
    mf.kernel()
    return mf


def test_extxyz_labels_read_back_in_ev(tmp_path):
    out = tmp_path / "water.extxyz"
    summary = labelling.label([WATER], RHF, out, progress=False, workers=SERIAL)
    assert summary["labelled"] == 1 and not summary["failures"].exists()
    mf = pyscf_reference(WATER, RHF)
    data = read_ase(out, dtype="float64")[0]
    np.testing.assert_allclose(float(data.energy), mf.e_tot * HARTREE_EV, rtol=1e-9)
    forces = -mf.nuc_grad_method().kernel() * HARTREE_EV / BOHR_A
    np.testing.assert_allclose(data.forces.numpy(), forces, atol=1e-6)  # extxyz keeps 8 decimals
    np.testing.assert_allclose(data.dipole.numpy()[0], mf.dip_moment(unit="AU", verbose=0) * BOHR_A,
                               atol=1e-5)
    info = read_structures(out)[0].info
    assert (info["xc"], info["basis"], info["grid_level"], info["density_fitting"]) == ("hf", "sto-3g", -1, False)
    assert info["source_index"] == 0 and info["pyscf_version"] == labelling.pyscf_version()


def test_hdf5_matrices_and_energy(tmp_path):
    level = LevelOfTheory(xc="lda,vwn", basis="sto-3g", grid_level=1)
    out = tmp_path / "water.h5"
    labelling.label([WATER], level, out, properties=["energy", "fock", "overlap", "density_matrix",
                                                       "orbital_energies"], progress=False, workers=SERIAL)
    data = read_hamiltonian_h5(out, expect=HamiltonianMetadata.computed_at(level), dtype="float64")[0]
    mf = pyscf_reference(WATER, level)
    n_ao = mf.mol.nao
    np.testing.assert_allclose(float(data.energy), mf.e_tot * HARTREE_EV, rtol=1e-8)
    np.testing.assert_allclose(data.hamiltonian.numpy().reshape(n_ao, n_ao), mf.get_fock(), atol=1e-6)
    np.testing.assert_allclose(data.overlap.numpy().reshape(n_ao, n_ao), mf.mol.intor("int1e_ovlp"), atol=1e-12)
    np.testing.assert_allclose(data.orbital_energies.numpy(), mf.mo_energy, atol=1e-6)
    assert int(data.n_electrons) == 10


def test_unconverged_scf_is_a_failure_not_a_label(tmp_path):
    out = tmp_path / "h2.extxyz"
    summary = labelling.label(h2(1), RHF, out, max_cycle=1, progress=False, workers=SERIAL)
    assert summary["failed"] == 1 and summary["labelled"] == 0 and not out.exists()
    (entry,) = [json.loads(line) for line in summary["failures"].read_text().splitlines()]
    assert entry["index"] == 0 and entry["level"] == RHF.as_dict() and entry["cycles"] == 1
    assert (entry["max_cycle"], entry["conv_tol"], entry["pyscf_version"]) == (1, 1e-10, labelling.pyscf_version())
    assert "not converged" in entry["reason"]
    again = labelling.label(h2(1), RHF, out, max_cycle=1, progress=False, workers=SERIAL)  # same settings: skipped
    assert again["skipped"] == again["failed_before"] == 1 and not out.exists()
    retried = labelling.label(h2(1), RHF, out, max_cycle=1, retry_failures=True, progress=False, workers=SERIAL)
    assert retried["failed"] == 1 and not out.exists()


def test_a_failure_is_retried_when_the_settings_that_failed_it_change(tmp_path):
    out = tmp_path / "h2.extxyz"
    labelling.label(h2(2), RHF, out, max_cycle=1, progress=False, workers=SERIAL)
    summary = labelling.label(h2(2), RHF, out, max_cycle=50, progress=False, workers=SERIAL)
    assert (summary["labelled"], summary["failed"], summary["failed_before"]) == (2, 0, 0)
    assert [f.info["source_index"] for f in read_structures(out)] == [0, 1]


def test_resume_computes_only_missing_structures(tmp_path, monkeypatch):
    out = tmp_path / "h2.extxyz"
    labelling.label(h2(3), RHF, out, progress=False, workers=SERIAL)
    frames = read_structures(out)
    write_extxyz(out.with_name("two.extxyz"), frames[:2])  # "lose" the last label
    out.with_name("two.extxyz").replace(out)

    calls, compute = [], labelling.compute_labels

    def counting(atoms, *args, **kwargs):
        calls.append(atoms.positions[1, 2])
        return compute(atoms, *args, **kwargs)

    monkeypatch.setattr(label_task, "compute_labels", counting)  # what label_structure calls
    summary = labelling.label(h2(3), RHF, out, progress=False, workers=SERIAL)
    assert summary["labelled"] == 1 and summary["skipped"] == 2 and calls == [pytest.approx(0.76)]
    resumed = read_structures(out)
    assert [f.info["source_index"] for f in resumed] == [0, 1, 2]
    np.testing.assert_allclose(resumed[2].get_potential_energy(), frames[2].get_potential_energy(), rtol=1e-10)


def test_shards_merge_in_source_order(tmp_path):
    out = tmp_path / "h2.h5"
    for i in range(2):
        labelling.label(h2(3), RHF, out, properties=["energy", "fock"], shard=(i, 2), progress=False, workers=SERIAL)
    shards = sorted(tmp_path.glob("h2.shard-*-of-2.h5"))
    assert [p.name for p in shards] == ["h2.shard-0-of-2.h5", "h2.shard-1-of-2.h5"]
    assert labelling.merge(shards, tmp_path / "all.h5") == 3
    merged = read_hamiltonian_h5(tmp_path / "all.h5")
    distances = [float(d.pos[1, 2]) for d in merged]
    np.testing.assert_allclose(distances, [0.70, 0.73, 0.76])
    with pytest.raises(ValueError, match="more than one input"):
        labelling.merge([shards[0], shards[0]], tmp_path / "twice.h5")


def test_bad_inputs_fail_before_any_scf(tmp_path):
    out = tmp_path / "x.extxyz"
    with pytest.raises(ValueError, match="odd"):
        labelling.label([Atoms("H3", positions=[[0, 0, 0], [0, 0, 0.8], [0, 0, 1.6]])], RHF, out, progress=False, workers=SERIAL)
    with pytest.raises(ValueError, match="no functions for element"):
        labelling.label([Atoms("Xe2", positions=[[0, 0, 0], [0, 0, 3]])], LevelOfTheory(basis="6-31g"), out,
                        progress=False, workers=SERIAL)
    with pytest.raises(ValueError, match="HDF5"):
        labelling.label(h2(1), RHF, out, properties=["energy", "fock"], progress=False, workers=SERIAL)
    with pytest.raises(ValueError, match="shard"):
        labelling.label(h2(1), RHF, out, shard=(2, 2), progress=False, workers=SERIAL)
    labelling.label(h2(1), RHF, out, progress=False, workers=SERIAL)
    with pytest.raises(ValueError, match="another level of theory"):
        labelling.label(h2(1), LevelOfTheory(method="rhf", xc=None, basis="6-31g"), out, progress=False, workers=SERIAL)


def test_dft_forces_are_the_derivative_of_the_labelled_energy():
    """With the grid response, DFT forces are exactly -dE/dR (central differences of the energy)."""
    level = LevelOfTheory(method="rks", xc="pbe", basis="sto-3g", grid_level=1)
    forces = labelling.compute_labels(WATER, level, ["forces"])["forces"]
    h = 1e-3  # Å
    for atom, axis in [(0, 2), (1, 1), (2, 0)]:
        energies = []
        for sign in (1, -1):
            moved = WATER.copy()
            moved.positions[atom, axis] += sign * h
            energies.append(labelling.compute_labels(moved, level, ["energy"])["energy"])
        assert forces[atom, axis] == pytest.approx(-(energies[0] - energies[1]) / (2 * h), abs=2e-4)


def test_previous_density_guess_saves_cycles_not_accuracy(tmp_path):
    # nearby frames of one trajectory: the second SCF starts from the first's converged density
    frames = [WATER.copy() for _ in range(3)]
    for k, frame in enumerate(frames):
        frame.positions[1, 1] += 0.01 * k
    labels = {}
    for reuse in (True, False):
        labelling.label(frames, RHF, tmp_path / f"{reuse}.extxyz", properties=["energy", "forces"],
                        progress=False, workers=SERIAL, reuse_density=reuse)
        labels[reuse] = read_structures(tmp_path / f"{reuse}.extxyz")
    reused, fresh = labels[True], labels[False]
    assert reused[0].info["scf_cycles"] == fresh[0].info["scf_cycles"]  # nothing to reuse yet
    assert sum(a.info["scf_cycles"] for a in reused[1:]) < sum(a.info["scf_cycles"] for a in fresh[1:])
    for a, b in zip(reused, fresh):
        assert abs(a.get_potential_energy() - b.get_potential_energy()) < 1e-7
        np.testing.assert_allclose(a.get_forces(), b.get_forces(), atol=1e-3)


# --- on Dask workers, and when workers or the whole run die ------------------------------------

MOLECULES = [
    Atoms("OH2", positions=[[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, -0.757, -0.469]]),  # overlapping: a failure
    WATER,
    Atoms("NH3", positions=[[0.0, 0.0, 0.11], [0.0, 0.94, -0.26], [0.81, -0.47, -0.26], [-0.81, -0.47, -0.26]]),
    Atoms("CH4", positions=[[0, 0, 0], [0.63, 0.63, 0.63], [-0.63, -0.63, 0.63], [-0.63, 0.63, -0.63],
                            [0.63, -0.63, -0.63]]),
]


def test_a_task_the_cluster_could_not_compute_is_a_failure_never_a_label(tmp_path, monkeypatch):
    def cluster_gave_up(function, tasks, workers, name):
        for position in range(len(tasks)):
            yield jobs.Outcome(position, None, "the worker running it died each time it was tried (KilledWorker)")

    monkeypatch.setattr(jobs, "run", cluster_gave_up)
    out = tmp_path / "h2.extxyz"
    summary = labelling.label(h2(2), RHF, out, progress=False, workers=SERIAL)
    assert (summary["labelled"], summary["failed"]) == (0, 2) and not out.exists()
    entries = [json.loads(line) for line in summary["failures"].read_text().splitlines()]
    assert [e["index"] for e in entries] == [0, 1] and all("KilledWorker" in e["reason"] for e in entries)


def test_a_run_killed_with_sigkill_resumes_with_nothing_lost_or_twice(tmp_path):
    import subprocess
    import time

    frames = [m.copy() for _ in range(6) for m in MOLECULES[1:]]
    for k, frame in enumerate(frames):
        frame.positions[0, 2] += 0.002 * k  # 18 distinct structures
    structures = tmp_path / "structures.extxyz"
    write_extxyz(structures, frames)
    out = tmp_path / "labels.extxyz"
    argv = [str(structures), "--method", "rhf", "--basis", "sto-3g", "--properties", "energy,forces", "--quiet",
            "--workers", "0", "-o", str(out)]
    run = subprocess.Popen([sys.executable, "-m", "zoo.cli", "label", *argv], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.exists() or out.read_text().count("Properties=") < 3):
        time.sleep(0.01)
    run.kill()  # SIGKILL: no cleanup, the lock left behind, perhaps mid-append
    run.wait()
    written = [f.info["source_index"] for f in read_structures(out)]
    assert 3 <= len(written) < len(frames), "the run was not killed while labelling"

    summary = labelling.label(structures, RHF, out, properties=["energy", "forces"], progress=False, workers=SERIAL)
    assert summary["labelled"] == len(frames) - len(written) and summary["skipped"] == len(written)
    resumed = read_structures(out)
    assert [f.info["source_index"] for f in resumed] == list(range(len(frames)))
    expected = labelling.compute_labels(frames[-1], RHF, ["energy"])["energy"]
    assert abs(resumed[-1].get_potential_energy() - expected) < 1e-7
    assert not summary["failures"].exists()
    assert not list(tmp_path.glob(".labels.extxyz.*")), "a temporary of the killed run is left behind"


def test_temporaries_of_a_killed_writer_are_removed_by_the_next(tmp_path):
    out = tmp_path / "h2.h5"
    leftovers = [tmp_path / ".h2.h5.4242.tmp", tmp_path / ".h2.h5.labelling", tmp_path / ".h2.h5.labelling.tmp"]
    for path in leftovers:
        path.write_text("half a file")
    unrelated = tmp_path / ".other.h5.4242.tmp"
    unrelated.write_text("another output's")
    labelling.label(h2(1), RHF, out, properties=["energy"], progress=False, workers=SERIAL)
    assert not any(path.exists() for path in leftovers) and unrelated.exists()


@pytest.mark.parametrize("suffix", [".extxyz", ".h5"])
def test_labels_end_in_source_order_whatever_order_the_workers_finish_in(tmp_path, monkeypatch, suffix):
    serial_run = jobs.run

    def last_first(function, tasks, workers, name):
        yield from reversed(list(serial_run(function, tasks, SERIAL, name)))

    monkeypatch.setattr(jobs, "run", last_first)
    out = tmp_path / f"h2{suffix}"
    labelling.label(h2(4), RHF, out, properties=["energy", "forces"], progress=False, workers=SERIAL)
    if suffix == ".h5":
        distances = [float(d.pos[1, 2]) for d in read_hamiltonian_h5(out)]
        indices = [index for index, _ in label_files.read_h5_entries(out)]
    else:
        frames = read_structures(out)
        distances = [f.positions[1, 2] for f in frames]
        indices = [f.info["source_index"] for f in frames]
    assert indices == [0, 1, 2, 3]
    np.testing.assert_allclose(distances, [0.70, 0.73, 0.76, 0.79])
