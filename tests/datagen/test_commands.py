"""``zoo sample``, ``zoo sample-qm9`` and ``zoo label`` called as functions with argv lists, on small molecules."""

import importlib.util
import sys

import ase.io
import numpy as np
import pytest

pytest.importorskip("pyscf")
pytest.importorskip("tblite")

from zoo.datagen.commands import label_main, sample_main, sample_qm9_main  # noqa: E402
from zoo.datagen.files import read_structures  # noqa: E402


@pytest.mark.parametrize("main", [sample_main, sample_qm9_main, label_main])
def test_help_shows_examples(main, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "examples:" in capsys.readouterr().out


def test_sample_md_then_label_in_shards_and_merge(tmp_path):
    frames = tmp_path / "water.extxyz"
    assert sample_main(["--smiles", "O", "--md", "--temperature", "500", "--frames", "3", "--interval", "2",
                        "--equilibrate", "2", "--seed", "0", "-o", str(frames)]) == 0
    sampled = read_structures(frames)
    assert len(sampled) == 3 and "xtb_energy" in sampled[0].info and sampled[0].calc is None

    labelled = tmp_path / "water_hf.extxyz"
    common = ["--method", "rhf", "--basis", "sto-3g", "--properties", "energy,forces", "--quiet", "--workers", "0",
              "-o", str(labelled)]
    for shard in ("0/2", "1/2"):
        assert label_main([str(frames), *common, "--shard", shard]) == 0
    shards = [str(tmp_path / f"water_hf.shard-{i}-of-2.extxyz") for i in range(2)]
    assert label_main(["--merge", *shards, "-o", str(labelled)]) == 0
    merged = read_structures(labelled)
    assert [f.info["source_index"] for f in merged] == [0, 1, 2]
    assert all(f.info["xc"] == "hf" and f.calc.results.keys() == {"energy", "forces"} for f in merged)


def test_sample_displacements_from_xyz(tmp_path):
    start = tmp_path / "h2.xyz"
    start.write_text("2\nH2\nH 0 0 0\nH 0 0 0.74\n")
    out = tmp_path / "h2_nm.extxyz"
    assert sample_main(["--xyz", str(start), "--displace", "normal_modes", "-n", "4", "--temperature", "300",
                        "-o", str(out)]) == 0
    frames = read_structures(out)
    assert len(frames) == 4 and frames[0].info["sampler"].startswith("normal_modes")


def test_sample_a_smiles_file_with_a_conformer_search_each_and_resume(tmp_path, capsys):
    molecules = tmp_path / "molecules.smi"
    molecules.write_text("# name after the SMILES\nO water\n\nCO  # methanol, unnamed\n")
    out = tmp_path / "minima.extxyz"
    argv = ["--smiles-file", str(molecules), "--conformers", "2", "--optimize", "--workers", "0", "-o", str(out)]
    assert sample_main(argv) == 0
    minima = read_structures(out)
    assert [m.info["name"] for m in minima] == ["water", "CO"]
    assert [m.info["start_index"] for m in minima] == [0, 1]
    assert all(m.info["conformer"] in (0, 1) and "conformers=2" in m.info["sample_settings"] for m in minima)
    assert list(minima[1].numbers) == [6, 8, 1, 1, 1, 1]  # the SMILES's atom order
    capsys.readouterr()
    assert sample_main(argv) == 0  # a rerun finds both done
    assert "2 of 2 done or failed before" in capsys.readouterr().err and len(read_structures(out)) == 2


def test_bad_input_is_one_clear_line(tmp_path, capsys):
    assert sample_main(["--smiles", "not-a-smiles(", "-o", str(tmp_path / "x.extxyz")]) == 1
    assert "cannot parse the SMILES" in capsys.readouterr().err
    smiles_file = tmp_path / "bad.smi"
    smiles_file.write_text("CCO ethanol\nC1CC benzene-typo\n")
    assert sample_main(["--smiles-file", str(smiles_file), "-o", str(tmp_path / "x.extxyz")]) == 1
    assert "line 2 ('C1CC')" in capsys.readouterr().err
    assert label_main([str(tmp_path / "missing.extxyz"), "-o", str(tmp_path / "y.extxyz")]) == 1
    assert "no structure file" in capsys.readouterr().err
    radical = tmp_path / "oh.xyz"
    radical.write_text("2\nOH\nO 0 0 0\nH 0 0 0.97\n")
    assert label_main([str(radical), "--basis", "sto-3g", "-o", str(tmp_path / "oh.extxyz")]) == 1
    assert "odd" in capsys.readouterr().err
    assert label_main([str(radical), "--shard", "1of2", "-o", str(tmp_path / "z.extxyz")]) == 1
    assert "--shard takes I/N" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("qm9pack") is None, reason="qm9pack not installed")
def test_sample_qm9_in_shards_then_perturb_then_label_keeps_the_info(tmp_path, capsys):
    out, reference = tmp_path / "xtb.extxyz", tmp_path / "reference.extxyz"
    for shard in ("0/2", "1/2"):  # ammonia, water, acetylene
        assert sample_qm9_main(["--rows", "1:6:2,2", "--exclude-rows", "5", "--shard", shard, "--quiet", "--workers", "0",
                                "-o", str(out),
                                "--reference-out", str(reference)]) == 0
    for name in (out, reference):
        shards = [str(name.with_name(f"{name.stem}.shard-{i}-of-2.extxyz")) for i in range(2)]
        assert sample_qm9_main(["--merge", *shards, "-o", str(name)]) == 0
    assert [f.info["qm9_row"] for f in read_structures(out)] == [1, 2, 3]
    assert [f.info["qm9_id"] for f in read_structures(reference)] == [2, 3, 4]

    perturbed = tmp_path / "perturbed.extxyz"
    assert sample_main(["--xyz", str(out), "--all-frames", "--displace", "random", "-n", "2", "--amplitude",
                        "0.05", "--seed", "3", "--workers", "0", "-o", str(perturbed)]) == 0
    frames = read_structures(perturbed)
    assert [f.info["qm9_row"] for f in frames] == [1, 1, 2, 2, 3, 3]
    assert all(f.info["structure_kind"] == "perturbed" and "xtb_energy" not in f.info for f in frames)
    assert [f.info["sampler"][-6:] for f in frames[::2]] == ["seed 3", "seed 4", "seed 5"]  # seed + k per structure

    labelled = tmp_path / "perturbed_hf.extxyz"
    assert label_main([str(perturbed), "--method", "rhf", "--basis", "sto-3g", "--properties", "energy",
                       "--quiet", "--workers", "0", "-o", str(labelled)]) == 0
    for source, label in zip(frames, read_structures(labelled)):
        assert {k: label.info[k] for k in ("smiles", "qm9_id", "qm9_row", "structure_kind")} == {
            k: source.info[k] for k in ("smiles", "qm9_id", "qm9_row", "structure_kind")}

    assert sample_qm9_main(["--rows", "0:x", "-o", str(out), "--reference-out", str(reference)]) == 1
    assert "--rows takes START:STOP" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        sample_main(["--smiles", "O", "--all-frames", "-o", str(tmp_path / "o.extxyz")])


def test_a_second_writer_of_a_label_file_stops_at_once_and_loses_nothing(tmp_path, capsys):
    from zoo._files import exclusive_output

    water = tmp_path / "water.xyz"
    water.write_text("3\nwater\nO 0 0 0.117\nH 0 0.757 -0.469\nH 0 -0.757 -0.469\n")
    labelled = tmp_path / "water_hf.extxyz"
    argv = [str(water), "--method", "rhf", "--basis", "sto-3g", "--properties", "energy", "--quiet", "--workers", "0",
            "-o", str(labelled)]
    with exclusive_output(labelled):  # another run labelling into the same file
        assert label_main(argv) == 1
    assert "is being written by another run (pid" in capsys.readouterr().err
    assert not labelled.exists()
    assert label_main(argv) == 0 and len(read_structures(labelled)) == 1


def test_a_second_writer_of_sampled_structures_stops_at_once(tmp_path, capsys):
    from zoo._files import exclusive_output

    out, reference = tmp_path / "xtb.extxyz", tmp_path / "reference.extxyz"
    with exclusive_output(reference):
        assert sample_qm9_main(["--rows", "0:2", "-o", str(out), "--reference-out", str(reference)]) == 1
        assert "is being written by another run" in capsys.readouterr().err
        assert sample_main(["--smiles", "O", "-o", str(reference)]) == 1
        assert "is being written by another run" in capsys.readouterr().err
    assert not out.exists() and not reference.exists()


def test_the_holder_of_an_output_is_named_and_its_lock_freed_when_it_is_killed(tmp_path, capsys):
    import socket
    import subprocess

    water = tmp_path / "water.xyz"
    water.write_text("3\nwater\nO 0 0 0.117\nH 0 0.757 -0.469\nH 0 -0.757 -0.469\n")
    labelled = tmp_path / "water_hf.extxyz"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from zoo._files import exclusive_output\n"
         "with exclusive_output(sys.argv[1]):\n    print('locked', flush=True); time.sleep(120)", str(labelled)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        argv = [str(water), "--method", "rhf", "--basis", "sto-3g", "--properties", "energy", "--quiet",
                "--workers", "0", "-o", str(labelled)]
        assert label_main(argv) == 1
        assert f"being written by another run (pid {holder.pid} on {socket.gethostname()}" in capsys.readouterr().err
    finally:
        holder.kill()  # SIGKILL: the lock file and its holder record stay behind
        holder.wait()
    assert labelled.with_name(labelled.name + ".lock").exists()
    assert label_main(argv) == 0 and len(read_structures(labelled)) == 1  # the stale lock is taken over


@pytest.mark.slow
def test_slurm_jobs_of_workers_label_and_are_cancelled_at_the_end(tmp_path, monkeypatch, capsys):
    """``--slurm-jobs`` end to end against a stand-in for SLURM: ``sbatch`` runs the job script
    dask-jobqueue writes as a local background process, ``scancel`` kills it."""
    import os
    import signal
    import time

    pytest.importorskip("dask_jobqueue")
    bin_dir, jobs_dir = tmp_path / "bin", tmp_path / "jobs"
    bin_dir.mkdir()
    jobs_dir.mkdir()
    (bin_dir / "sbatch").write_text(
        "#!/usr/bin/env bash\n"
        f'script={jobs_dir}/job-$$.sh; cp "$1" "$script"\n'
        f'setsid bash "$script" > "$script.log" 2>&1 < /dev/null &\n'
        'echo "Submitted batch job $!"\n')
    (bin_dir / "scancel").write_text(f'#!/usr/bin/env bash\necho "$@" >> {jobs_dir}/cancelled\n'
                                     'kill -TERM -- "-$1" 2>/dev/null; exit 0\n')
    for tool in ("sbatch", "scancel"):
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    config = tmp_path / "slurm.yaml"
    config.write_text("jobqueue:\n  slurm:\n    cores: 1\n    processes: 1\n    memory: 1GB\n"
                      "    job-script-prologue: ['export OMP_NUM_THREADS=1']\n")
    water = tmp_path / "water.xyz"
    water.write_text("".join(f"3\nwater {k}\nO 0 0 0.117\nH 0 0.757 -0.469\nH 0 -0.757 {-0.469 - 0.01 * k}\n"
                             for k in range(3)))
    labelled = tmp_path / "water_hf.extxyz"
    assert label_main([str(water), "--method", "rhf", "--basis", "sto-3g", "--properties", "energy", "--quiet",
                       "--dask-config", str(config), "--slurm-jobs", "2", "-o", str(labelled)]) == 0
    assert "3 labelled, 0 failed" in capsys.readouterr().err
    assert [f.info["source_index"] for f in read_structures(labelled)] == [0, 1, 2]
    submitted = sorted(jobs_dir.glob("job-*.sh"))
    assert len(submitted) == 2 and "export OMP_NUM_THREADS=1" in submitted[0].read_text()
    cancelled = (jobs_dir / "cancelled").read_text().split()
    assert len(cancelled) == 2  # both jobs, when the run ended
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(_alive(int(job)) for job in cancelled):
        time.sleep(0.2)
    for job in cancelled:  # leave no worker behind, whatever happened
        if _alive(int(job)):
            os.killpg(int(job), signal.SIGKILL)
            pytest.fail(f"job {job} was still running 30 s after scancel")


def _alive(process_group: int) -> bool:
    import os

    try:
        os.killpg(process_group, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
def test_a_label_run_stopped_by_its_batch_system_ends_cleanly_and_keeps_its_labels(tmp_path):
    """SIGTERM mid-run (a batch system's time limit): one line saying how to go on, exit status 143,
    no traceback or warning from Dask's workers, and the labels done so far in the output."""
    import signal
    import subprocess
    import time

    from ase.build import molecule

    waters = []
    for seed in range(200):
        water = molecule("H2O")
        water.rattle(0.02, seed=seed)
        waters.append(water)
    source, output = tmp_path / "water.extxyz", tmp_path / "water_b3lyp.extxyz"
    ase.io.write(source, waters)
    run = subprocess.Popen([sys.executable, "-m", "zoo.cli", "label", str(source), "--basis", "def2-svp",
                            "--properties", "energy,forces", "--workers", "1", "--quiet", "-o", str(output)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (output.exists() and len(read_structures(output)) >= 2) and time.monotonic() < deadline:
        time.sleep(0.2)
    run.send_signal(signal.SIGTERM)
    _, stderr = run.communicate(timeout=60)
    assert run.returncode == 128 + signal.SIGTERM, stderr
    assert "zoo label: stopped (SIGTERM)" in stderr and "same command goes on" in stderr
    assert "Traceback" not in stderr and "Warning" not in stderr, stderr
    kept = read_structures(output)
    assert 2 <= len(kept) < len(waters)
    for frame in kept:  # each labelled frame is whole: its own geometry, energy and forces
        np.testing.assert_allclose(frame.positions, waters[frame.info["source_index"]].positions, atol=1e-6)
        assert np.isfinite(frame.get_potential_energy()) and frame.get_forces().shape == (3, 3)
