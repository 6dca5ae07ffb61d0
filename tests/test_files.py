"""zoo._files: records appended by several processes at once are all kept; a redone one replaces its old one."""

import json
import multiprocessing

from zoo._files import append_json_record


def _append_many(path, worker, n):
    for i in range(n):
        append_json_record(path, {"worker": worker, "i": i})


def test_appends_from_several_processes_keep_every_record(tmp_path):
    path = tmp_path / "study.json"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_append_many, args=(path, w, 20)) for w in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    records = json.loads(path.read_text())
    assert sorted((r["worker"], r["i"]) for r in records) == [(w, i) for w in range(3) for i in range(20)]
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind


def test_a_replaced_record_is_dropped_and_the_others_kept(tmp_path):
    path = tmp_path / "records.json"
    for seed in (0, 1):
        append_json_record(path, {"seed": seed, "mae": 5.0})
    records = append_json_record(path, {"seed": 0, "mae": 4.0}, replaces=lambda r: r["seed"] == 0)
    assert records == [{"seed": 1, "mae": 5.0}, {"seed": 0, "mae": 4.0}]
    assert json.loads(path.read_text()) == records
