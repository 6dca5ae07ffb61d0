"""Per-structure tasks of data generation on dask.distributed, and the one process that writes.

``zoo sample``, ``zoo sample-qm9`` and ``zoo label`` split their work into independent tasks (one
per start structure, QM9 row or structure to label). :func:`run` computes them wherever the
workers are and hands each outcome to the calling process as soon as it finishes
(:func:`distributed.as_completed`). That process alone holds the output's lock
(:func:`zoo._files.exclusive_output`) and appends the results, so no number of workers on no
number of machines can interleave or duplicate what is written.

Where the tasks run is a :class:`Workers`:

- ``Workers(0)``: in this process, one after the other; an unexpected exception propagates with
  its traceback (tests, debugging);
- ``Workers()``, the default: a local Dask cluster of worker processes, one per core and at most
  one per task, each running one task at a time with ``threads`` OpenMP threads (PySCF, xTB);
- ``Workers(scheduler=...)``: a running Dask cluster, by address (``tcp://10.0.0.5:8786``) or as a
  cluster object such as dask-jobqueue's ``SLURMCluster`` (:func:`slurm_cluster`). Without it, and
  without a number of local workers, Dask's ``scheduler-address`` setting (for example from
  ``--dask-config``) names one.

Faults: Dask reruns the task of a worker that dies (up to ``distributed.scheduler.allowed-failures``
deaths per task, 3 by default, then ``KilledWorker``) and reruns a task that raised (``retries``
times). What still fails comes back as an :class:`Outcome` with an ``error`` for the caller to
record. Failures that are answers, such as an SCF that does not converge, are returned by the
task function itself rather than raised, so they are not retried.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo._signals import stops_deferred


@dataclass(frozen=True)
class Workers:
    """Where the tasks of a run execute.

    Attributes:
        n: local worker processes; ``None`` for one per core (divided by ``threads``), ``0`` to
            run every task in this process.
        threads: OpenMP threads of each local worker (PySCF's and xTB's threads per task).
        scheduler: a running Dask cluster: its scheduler's address, or a cluster object.
        retries: how often Dask reruns a task that raised before reporting it as failed.
    """

    n: int | None = None
    threads: int = 1
    scheduler: Any = None
    retries: int = 1

    def __post_init__(self):
        if self.n is not None and self.n < 0:
            raise ValueError(f"the number of workers must be 0 (run in this process) or more, got {self.n}")
        if self.threads < 1:
            raise ValueError(f"threads per worker must be at least 1, got {self.threads}")
        if self.retries < 0:
            raise ValueError(f"retries must be 0 or more, got {self.retries}")
        if self.n is not None and self.scheduler is not None:
            raise ValueError("give a number of local workers or a Dask scheduler to connect to, not both "
                             "(the cluster behind a scheduler has its own workers)")

    @property
    def in_process(self) -> bool:
        return self.n == 0


@dataclass(frozen=True)
class Outcome:
    """What one task came back with.

    Attributes:
        task: its position in the list of tasks.
        value: what the task function returned (``None`` if it failed on the cluster).
        error: why the cluster could not compute it, after retries (``None`` if it did).
        seconds: how long the task function ran.
    """

    task: int
    value: Any = None
    error: str | None = None
    seconds: float = 0.0


def run(function: Callable, tasks: Sequence[tuple], workers: Workers, name: str) -> Iterator[Outcome]:
    """Compute ``function(*args)`` for every ``args`` in ``tasks``, yielding outcomes as they finish.

    ``function`` must be importable by the workers (a module-level function) and should return,
    not raise, the failures it expects. ``name`` prefixes the Dask task keys (what the dashboard
    shows). All tasks are submitted at once, so an adaptive cluster sees the whole queue.
    """
    if not tasks:
        return
    if workers.in_process:
        for position, args in enumerate(tasks):
            seconds, value = _timed(function, args)
            yield Outcome(position, value, None, seconds)
        return
    from distributed import as_completed

    with _client(workers, len(tasks)) as client:
        run_id = uuid.uuid4().hex
        futures = client.map(functools.partial(_timed, function), list(tasks), pure=False, retries=workers.retries,
                             key=[f"{name}-{run_id}-{position}" for position in range(len(tasks))])
        position_of = {future.key: position for position, future in enumerate(futures)}
        finished = as_completed(futures)
        del futures  # a result stays in a worker's memory only until its outcome is handed over
        for future in finished:
            position = position_of[future.key]
            if future.status == "cancelled":
                raise RuntimeError(f"Dask cancelled task {position}: the scheduler restarted or the connection to "
                                   "it broke. Rerun the same command to resume")
            try:
                # a result lost with its worker since it finished is computed again first
                seconds, value = future.result()
            except Exception as error:
                if future.status != "error":
                    raise  # not the task's failure but the cluster's (lost scheduler): stop, resume later
                yield Outcome(position, None, _describe(error, workers.retries))
                continue
            yield Outcome(position, value, None, seconds)


def _timed(function: Callable, args: tuple) -> tuple[float, Any]:
    start = time.perf_counter()
    value = function(*args)
    return time.perf_counter() - start, value


def _describe(error: BaseException, retries: int) -> str:
    from distributed import KilledWorker

    if isinstance(error, KilledWorker):
        return ("the worker running it died each time it was tried (KilledWorker): out of memory, a time "
                "limit, or a crash in native code")
    return f"{type(error).__name__}: {error} (raised on a worker; tried {retries + 1} times)"


#: Dask settings of the local cluster zoo starts (a running cluster keeps its own).
LOCAL_CLUSTER_SETTINGS = {
    # one task per worker thread at a time: a worker that dies takes only the task it was running
    # with it, not tasks queued behind it (which would each count a death)
    "distributed.scheduler.worker-saturation": 1.0,
    # Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536, which turns off glibc's
    # dynamic mmap threshold: every array PySCF allocates above 128 kB is then mapped and unmapped
    # afresh, page faults included, which made each SCF 25-40 % slower than in a plain process
    # (benchmarks/qc/dask_throughput.py). None leaves the variable unset (glibc's default).
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
}


def default_worker_count(threads: int = 1) -> int:
    """Cores available to this process (its CPU affinity, as a batch system sets it) over ``threads``."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // threads)


@contextlib.contextmanager
def _client(workers: Workers, n_tasks: int):
    import dask
    from distributed import Client, LocalCluster

    # zoo reports what matters itself (failed tasks, progress); Dask's own log lines about workers
    # that died or restarted and about comms closed at shutdown are noise to a user of zoo
    distributed_logger = logging.getLogger("distributed")
    level = distributed_logger.level
    distributed_logger.setLevel(logging.CRITICAL)
    try:
        scheduler = workers.scheduler
        if scheduler is None and workers.n is None:  # a number of local workers overrides Dask's default cluster
            scheduler = dask.config.get("scheduler-address", None)
        if scheduler is not None:
            try:
                client = Client(scheduler)
            except OSError as error:
                raise ConnectionError(f"cannot reach the Dask scheduler at {scheduler}: {error}. Start it, or "
                                      "correct the address (--scheduler, or scheduler-address in --dask-config)") from None
            with client:
                yield client
            return
        n = min(workers.n or default_worker_count(workers.threads), n_tasks)
        with contextlib.ExitStack() as stack:
            # a stop (Ctrl-C, SIGTERM) while the cluster starts waits until it is ours to close
            with stops_deferred(), dask.config.set(LOCAL_CLUSTER_SETTINGS):
                # no dashboard; the scheduler's HTTP server (health checks) takes any free local port,
                # so a second zoo run beside the first does not warn that port 8787 is taken
                cluster = stack.enter_context(LocalCluster(
                    n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                    scheduler_kwargs={"dashboard_address": "127.0.0.1:0"}, silence_logs=logging.CRITICAL,
                    env={"OMP_NUM_THREADS": str(workers.threads)}))
                client = stack.enter_context(Client(cluster))
            yield client
    finally:
        distributed_logger.setLevel(level)


def read_dask_config(path: str | os.PathLike) -> dict:
    """Dask settings from a YAML file, as dotted keys for :func:`dask.config.set`.

    The file uses Dask's own configuration schema (``scheduler-address: tcp://host:8786``,
    ``distributed: {scheduler: {allowed-failures: 5}}``, ``jobqueue: {slurm: {...}}``) and is read
    as data with :func:`yaml.safe_load`, which never runs code. Nested settings are merged into
    Dask's configuration key by key, so a file that sets one key of a section keeps the others.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: not YAML, or not a mapping.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no Dask configuration file at {path}")
    try:
        settings = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ValueError(f"{path} is not valid YAML: {error}") from None
    if not isinstance(settings, dict):
        raise ValueError(f"{path} must hold a mapping of Dask settings (for example `scheduler-address: "
                         f"tcp://10.0.0.5:8786`), not a {type(settings).__name__}")
    return dict(_dotted(settings))


def _dotted(settings: dict, prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in settings.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            yield from _dotted(value, name)
        else:
            yield name, value


def slurm_cluster():
    """dask-jobqueue's ``SLURMCluster`` as Dask's ``jobqueue.slurm`` settings describe it (no jobs yet).

    Scale it (``cluster.scale(jobs=n)``) to submit worker jobs; closing it cancels them.

    Raises:
        ValueError: the settings lack what a job needs (cores, memory).
    """
    from dask_jobqueue import SLURMCluster

    try:
        return SLURMCluster()
    except ValueError as error:
        raise ValueError(f"SLURM workers need jobqueue.slurm settings ({error}); put cores, memory and "
                         "walltime under jobqueue: slurm: in the --dask-config file") from None


@contextlib.contextmanager
def configured_workers(n: int | None = None, threads: int = 1, scheduler: str | None = None,
                       dask_config: str | os.PathLike | None = None, slurm_jobs: int | None = None,
                       retries: int = 1) -> Iterator[Workers]:
    """The :class:`Workers` a command line asks for, with its Dask settings in force for the block.

    ``dask_config`` is a YAML file of Dask settings (:func:`read_dask_config`); ``slurm_jobs``
    submits that many SLURM jobs of workers (:func:`slurm_cluster`), cancelled when the block ends.
    """
    import dask

    if slurm_jobs is not None and (n is not None or scheduler is not None):
        raise ValueError("--slurm-jobs starts its own workers: leave out --workers and --scheduler")
    if slurm_jobs is not None and slurm_jobs < 1:
        raise ValueError(f"--slurm-jobs must be at least 1, got {slurm_jobs}")
    settings = read_dask_config(dask_config) if dask_config is not None else {}
    # the packages' defaults must be in Dask's configuration before the file's settings go over
    # them: a section that did not exist yet would be dropped whole when the settings are undone
    import distributed  # noqa: F401

    if slurm_jobs is not None or any(key.startswith("jobqueue.") for key in settings):
        import dask_jobqueue  # noqa: F401
    with dask.config.set(settings):
        if slurm_jobs is None:
            yield Workers(n=n, threads=threads, scheduler=scheduler, retries=retries)
            return
        with slurm_cluster() as cluster:
            cluster.scale(jobs=slurm_jobs)
            yield Workers(threads=threads, scheduler=cluster, retries=retries)


class InOrder:
    """Results handed on in task order, whatever order the workers finish them in.

    >>> in_order = InOrder()
    >>> list(in_order.add(1, "b")), list(in_order.add(0, "a"))
    ([], [(0, 'a'), (1, 'b')])
    """

    def __init__(self):
        self._waiting: dict[int, Any] = {}
        self._next = 0

    def add(self, task: int, value: Any) -> Iterator[tuple[int, Any]]:
        """Take the result of task ``task``; yield ``(task, value)`` of every result now due, in order."""
        self._waiting[task] = value
        while self._next in self._waiting:
            yield self._next, self._waiting.pop(self._next)
            self._next += 1


class Progress:
    """One line per finished task on stderr: ``[where] done/total (what, seconds; failed) ETA``."""

    def __init__(self, where: str, total: int, enabled: bool = True):
        self.where, self.total, self.enabled = where, total, enabled
        self.done = self.failed = 0
        self.start = time.perf_counter()

    def update(self, what: str, seconds: float, failed: bool) -> None:
        self.done += 1
        self.failed += bool(failed)
        if self.enabled:
            remaining = (time.perf_counter() - self.start) / self.done * (self.total - self.done)
            log(f"[{self.where}] {self.done}/{self.total} ({what}, {seconds:.1f} s; {self.failed} failed) "
                f"ETA {duration(remaining)}")


def duration(seconds: float) -> str:
    """``3725`` -> ``"1h02m"``, ``65`` -> ``"1m05s"``."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def log(message: str) -> None:
    """Progress messages go to stderr, so that stdout stays clean for pipes."""
    print(message, file=sys.stderr, flush=True)
