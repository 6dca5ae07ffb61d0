"""zoo.datagen.sampling_runs.sample: many start structures, appended in order, resumed, sharded, failures logged."""

import numpy as np
import pytest
from ase import Atoms

from zoo.datagen import sampling, sampling_runs
from zoo.datagen.commands import sample_main
from zoo.datagen.failures import entries
from zoo.datagen.files import read_structures
from zoo.datagen.jobs import Workers

SERIAL = Workers(0)
RANDOM = {"n": 2, "amplitude": 0.05, "mode": "random", "temperature_K": 300.0}


def starts(n: int = 5) -> list:
    return [Atoms("H2O", positions=[[0, 0, 0.117], [0, 0.757 + 0.01 * k, -0.469], [0, -0.757, -0.469]],
                  info={"name": f"water {k}"}) for k in range(n)]


def positions(frames) -> np.ndarray:
    return np.stack([frame.positions for frame in frames])


def test_frames_come_in_start_order_with_their_start_and_the_starts_info(tmp_path):
    out = tmp_path / "displaced.extxyz"
    summary = sampling_runs.sample(starts(3), out, seed=4, displacement=RANDOM, progress=False, workers=SERIAL)
    frames = read_structures(out)
    assert summary["done"] == 3 and summary["frames"] == 6 and summary["failed"] == 0
    assert [f.info["start_index"] for f in frames] == [0, 0, 1, 1, 2, 2]
    assert [f.info["name"] for f in frames[::2]] == ["water 0", "water 1", "water 2"]
    assert [f.info["sampler"][-6:] for f in frames[::2]] == ["seed 4", "seed 5", "seed 6"]  # seed + k


def test_a_killed_run_resumes_without_losing_or_duplicating_a_start(tmp_path, monkeypatch):
    fresh = tmp_path / "fresh.extxyz"
    sampling_runs.sample(starts(), fresh, displacement=RANDOM, progress=False, workers=SERIAL)

    out = tmp_path / "resumed.extxyz"
    original = sampling.sample_start

    def killed_at_the_third(atoms, seed, *args):
        if seed == 2:
            raise KeyboardInterrupt  # the whole run stops here, as with kill
        return original(atoms, seed, *args)

    monkeypatch.setattr(sampling, "sample_start", killed_at_the_third)
    with pytest.raises(KeyboardInterrupt):
        sampling_runs.sample(starts(), out, displacement=RANDOM, progress=False, workers=SERIAL)
    assert [f.info["start_index"] for f in read_structures(out)] == [0, 0, 1, 1]
    monkeypatch.setattr(sampling, "sample_start", original)
    summary = sampling_runs.sample(starts(), out, displacement=RANDOM, progress=False, workers=SERIAL)
    assert (summary["done"], summary["skipped"]) == (3, 2)
    np.testing.assert_array_equal(positions(read_structures(out)), positions(read_structures(fresh)))
    assert sampling_runs.sample(starts(), out, displacement=RANDOM, progress=False, workers=SERIAL)["done"] == 0


def test_a_failed_start_is_logged_skipped_on_rerun_and_retried_when_asked(tmp_path, monkeypatch):
    out = tmp_path / "out.extxyz"
    original = sampling.sample_start

    def xtb_fails_on_the_second(atoms, seed, *args):
        if seed == 1:
            raise RuntimeError("GFN2-xTB did not converge")
        return original(atoms, seed, *args)

    monkeypatch.setattr(sampling, "sample_start", xtb_fails_on_the_second)
    summary = sampling_runs.sample(starts(3), out, displacement=RANDOM, progress=False, workers=SERIAL)
    assert (summary["done"], summary["failed"]) == (2, 1)
    assert [f.info["start_index"] for f in read_structures(out)] == [0, 0, 2, 2]
    [failure] = entries(summary["failures"])
    assert failure["start_index"] == 1 and "did not converge" in failure["reason"]
    assert sampling_runs.sample(starts(3), out, displacement=RANDOM, progress=False, workers=SERIAL)["skipped"] == 3

    monkeypatch.setattr(sampling, "sample_start", original)
    summary = sampling_runs.sample(starts(3), out, displacement=RANDOM, retry_failures=True, progress=False,
                                   workers=SERIAL)
    assert summary["done"] == 1
    assert [f.info["start_index"] for f in read_structures(out)] == [0, 0, 1, 1, 2, 2]  # back in start order


def test_a_rerun_with_other_settings_does_not_append(tmp_path):
    out = tmp_path / "out.extxyz"
    sampling_runs.sample(starts(2), out, displacement=RANDOM, progress=False, workers=SERIAL)
    with pytest.raises(ValueError, match="made with other settings"):
        sampling_runs.sample(starts(2), out, displacement={**RANDOM, "amplitude": 0.1}, progress=False, workers=SERIAL)
    assert len(read_structures(out)) == 4


def test_shards_on_dask_workers_merge_into_the_serial_file(tmp_path):
    start_file = tmp_path / "starts.extxyz"
    from zoo.data.readers.ase_io import write_extxyz

    write_extxyz(start_file, starts())
    serial = tmp_path / "serial.extxyz"
    common = ["--xyz", str(start_file), "--all-frames", "--displace", "random", "-n", "2", "--seed", "3"]
    assert sample_main([*common, "--workers", "0", "-o", str(serial)]) == 0
    out = tmp_path / "sharded.extxyz"
    for shard in ("0/2", "1/2"):
        assert sample_main([*common, "--workers", "2", "--shard", shard, "-o", str(out)]) == 0
    shards = [str(tmp_path / f"sharded.shard-{i}-of-2.extxyz") for i in range(2)]
    assert sample_main(["--merge", *shards, "-o", str(out)]) == 0
    np.testing.assert_array_equal(positions(read_structures(out)), positions(read_structures(serial)))
    assert [f.info["start_index"] for f in read_structures(out)] == [k for k in range(5) for _ in range(2)]


def test_shard_without_all_frames_is_a_usage_error(tmp_path):
    with pytest.raises(SystemExit):
        sample_main(["--smiles", "O", "--shard", "0/2", "-o", str(tmp_path / "o.extxyz")])
