"""zoo.datagen.jobs: tasks on Dask workers, what comes back when workers die or tasks raise, Dask settings, SLURM."""

import os
import re
import sys
from pathlib import Path

import cloudpickle
import dask
import distributed  # noqa: F401  (its settings in dask.config)
import pytest

from zoo.datagen import jobs
from zoo.datagen.jobs import Workers

# the task functions below live in this test module, which Dask's worker processes cannot import:
# they travel by value instead
cloudpickle.register_pickle_by_value(sys.modules[__name__])

DOCS = Path(__file__).resolve().parents[2] / "docs" / "data_generation.md"


def flaky(x: int, folder: str) -> int:
    """x*x, except: 1 kills its worker the first time, 3 kills its worker every time, 4 raises every time."""
    attempts = Path(folder) / f"attempts-{x}"
    with open(attempts, "a") as stream:
        stream.write("attempt\n")
    if x == 1 and attempts.read_text().count("attempt") == 1:
        os._exit(1)
    if x == 3:
        os._exit(1)
    if x == 4:
        raise RuntimeError("bad input 4")
    return x * x


def attempts(folder: Path, x: int) -> int:
    path = folder / f"attempts-{x}"
    return path.read_text().count("attempt") if path.exists() else 0


@pytest.mark.slow
def test_a_dying_worker_loses_only_its_task_which_is_rerun_then_reported(tmp_path):
    tasks = [(x, str(tmp_path)) for x in range(7)]
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):  # a task may kill one worker, not two
        outcomes = {o.task: o for o in jobs.run(flaky, tasks, Workers(2, retries=1), name="flaky")}
    assert sorted(outcomes) == list(range(7))
    assert {x: outcomes[x].value for x in (0, 1, 2, 5, 6)} == {0: 0, 1: 1, 2: 4, 5: 25, 6: 36}
    assert all(outcomes[x].error is None for x in (0, 1, 2, 5, 6))  # no other task blamed for the deaths
    # died once, then rerun on a fresh worker (once more if a death took its result with it
    # before this process fetched it)
    assert attempts(tmp_path, 1) >= 2
    assert "KilledWorker" in outcomes[3].error and outcomes[3].value is None
    assert attempts(tmp_path, 3) == 2  # allowed-failures + 1 deaths, then given up
    assert "RuntimeError: bad input 4" in outcomes[4].error and "tried 2 times" in outcomes[4].error
    assert attempts(tmp_path, 4) == 2  # retries=1


def square(x: int) -> int:
    return x * x


def test_in_process_runs_in_order_and_lets_exceptions_through(tmp_path):
    outcomes = list(jobs.run(square, [(3,), (4,)], Workers(0), name="square"))
    assert [(o.task, o.value, o.error) for o in outcomes] == [(0, 9, None), (1, 16, None)]
    with pytest.raises(RuntimeError, match="bad input 4"):
        list(jobs.run(flaky, [(4, str(tmp_path))], Workers(0), name="flaky"))
    assert list(jobs.run(square, [], Workers(), name="square")) == []  # no tasks: no cluster


def worker_environment(name: str) -> str | None:
    return os.environ.get(name)


def test_local_workers_keep_glibcs_dynamic_malloc_thresholds():
    """Dask's nanny sets MALLOC_TRIM_THRESHOLD_, which made every SCF 25-40 % slower: not in zoo's workers."""
    outcomes = list(jobs.run(worker_environment, [("MALLOC_TRIM_THRESHOLD_",), ("OMP_NUM_THREADS",)], Workers(1),
                             name="environment"))
    assert [o.value for o in sorted(outcomes, key=lambda o: o.task)] == [None, "1"]


def test_a_second_local_run_beside_a_first_does_not_warn_about_ports(recwarn):
    with jobs._client(Workers(1), 1) as first, jobs._client(Workers(1), 1) as second:
        assert first.submit(square, 2).result() == second.submit(square, 3).result() - 5
    assert not [w for w in recwarn if "already in use" in str(w.message)]


def test_a_running_cluster_named_in_a_dask_config_file(tmp_path):
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster:
        config = tmp_path / "dask.yaml"
        config.write_text(f"scheduler-address: {cluster.scheduler_address}\n")
        with jobs.configured_workers(dask_config=config) as workers:
            values = sorted(o.value for o in jobs.run(square, [(2,), (5,)], workers, name="square"))
    assert values == [4, 25]


def test_an_unreachable_scheduler_is_one_clear_error():
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        with pytest.raises(ConnectionError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
            list(jobs.run(square, [(1,)], Workers(scheduler="tcp://127.0.0.1:9"), name="square"))


def test_dask_config_files_are_data_merged_key_by_key(tmp_path):
    config = tmp_path / "dask.yaml"
    config.write_text("distributed:\n  scheduler:\n    allowed-failures: 7\n")
    saturation = dask.config.get("distributed.scheduler.worker-saturation")
    with jobs.configured_workers(dask_config=config):
        assert dask.config.get("distributed.scheduler.allowed-failures") == 7
        assert dask.config.get("distributed.scheduler.worker-saturation") == saturation  # the rest kept
    assert dask.config.get("distributed.scheduler.allowed-failures") != 7  # only for the run

    marker = tmp_path / "executed"
    hostile = tmp_path / "hostile.yaml"
    hostile.write_text(f"x: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        jobs.read_dask_config(hostile)
    assert not marker.exists()
    listed = tmp_path / "list.yaml"
    listed.write_text("- scheduler-address\n")
    with pytest.raises(ValueError, match="must hold a mapping of Dask settings"):
        jobs.read_dask_config(listed)
    with pytest.raises(FileNotFoundError, match="no Dask configuration file"):
        jobs.read_dask_config(tmp_path / "missing.yaml")


def test_contradictory_worker_settings_are_errors():
    with pytest.raises(ValueError, match="not both"):
        Workers(2, scheduler="tcp://127.0.0.1:8786")
    with pytest.raises(ValueError, match="0 \\(run in this process\\) or more"):
        Workers(-1)
    with pytest.raises(ValueError, match="--slurm-jobs starts its own workers"):
        with jobs.configured_workers(n=2, slurm_jobs=4):
            pass


def _docs_block(language: str, first_line: str) -> str:
    """The fenced ``language`` block of the data-generation page whose first line is ``first_line``."""
    pattern = rf"```{language}\n({re.escape(first_line)}\n.*?)```"
    match = re.search(pattern, DOCS.read_text(encoding="utf-8"), flags=re.DOTALL)
    assert match, f"no ```{language} block starting with {first_line!r} in {DOCS.name}"
    return match.group(1)


def test_the_slurm_recipe_makes_the_job_script_the_docs_show(tmp_path):
    pytest.importorskip("dask_jobqueue")
    config = tmp_path / "slurm.yaml"
    config.write_text(_docs_block("yaml", "# slurm.yaml: SLURM jobs of Dask workers for zoo sample and zoo label"))
    shown = _docs_block("text", "#!/usr/bin/env bash")
    with dask.config.set(jobs.read_dask_config(config)), jobs.slurm_cluster() as cluster:
        script = cluster.job_script()
        address = cluster.scheduler_address
    generic = script.replace(sys.executable, "/path/to/venv/bin/python").replace(address, "tcp://LOGIN-NODE:PORT")
    assert generic == shown
