"""The failure log: one writer, lines read back, a torn line skipped, shards' logs joined."""

import json

from zoo.datagen import failures


def test_entries_read_back_what_was_recorded_and_skip_a_torn_line(tmp_path):
    log = failures.failures_path(tmp_path / "runs" / "labels.extxyz")
    assert log == tmp_path / "runs" / "labels.failures.jsonl"
    assert failures.entries(log) == []  # no log yet: nothing failed
    failures.record(log, {"index": 3, "reason": "SCF not converged"})
    with open(log, "a") as stream:  # a run killed in the middle of a line
        stream.write('{"index": 4, "rea')
    failures.record(log, {"index": 5, "reason": "overlapping atoms"})
    assert [entry["index"] for entry in failures.entries(log)] == [3, 5]


def test_merge_joins_the_logs_of_the_inputs_next_to_the_output(tmp_path):
    shards = [tmp_path / f"out.shard-{i}-of-3.extxyz" for i in range(3)]
    failures.record(failures.failures_path(shards[0]), {"index": 0})
    failures.record(failures.failures_path(shards[2]), {"index": 2})  # shard 1 had no failures
    failures.merge(shards, tmp_path / "out.extxyz")
    lines = (tmp_path / "out.failures.jsonl").read_text().splitlines()
    assert [json.loads(line)["index"] for line in lines] == [0, 2]
    failures.merge(shards[1:2], tmp_path / "clean.extxyz")
    assert not (tmp_path / "clean.failures.jsonl").exists()
