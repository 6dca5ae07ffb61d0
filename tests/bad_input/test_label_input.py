"""``zoo label`` on bad settings and bad structures: one clear line before any work, or a recorded
failure for the one structure at fault, and failures retried once the settings that failed them change."""

import json

import pytest

pytest.importorskip("pyscf")

from zoo.datagen.commands import label_main  # noqa: E402
from zoo.datagen.files import read_structures  # noqa: E402

WATER = "O 0 0 0.117\nH 0 0.757 -0.469\nH 0 -0.757 -0.469\n"
OVERLAPPING = "O 0 0 0.117\nH 0 0 0.117\nH 0 -0.757 -0.469\n"


def structures(tmp_path, *bodies):
    path = tmp_path / "structures.xyz"
    path.write_text("".join(f"3\nframe {k}\n{body}" for k, body in enumerate(bodies)))
    return str(path)


@pytest.mark.parametrize("level, message", [
    (["--xc", "nosuchxc"], "unknown functional xc='nosuchxc'"),
    (["--method", "rhf", "--basis", "nosuchbasis"], "unknown basis 'nosuchbasis'"),
])
def test_an_unknown_level_of_theory_stops_before_any_work(tmp_path, capsys, level, message):
    out = tmp_path / "labels.extxyz"
    assert label_main([structures(tmp_path, WATER, WATER), *level, "--workers", "0", "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"zoo label: error: {message}" in err and "such as" in err  # the problem and valid names
    assert "to do" not in err and "Traceback" not in err
    assert not out.exists() and not out.with_name("labels.failures.jsonl").exists()


@pytest.mark.parametrize("order", ["first", "later"])
def test_an_overlapping_frame_is_a_failure_wherever_it_is(tmp_path, capsys, order):
    frames = [OVERLAPPING, WATER] if order == "first" else [WATER, OVERLAPPING]
    out = tmp_path / "labels.extxyz"
    argv = [structures(tmp_path, *frames), "--method", "rhf", "--basis", "sto-3g", "--properties", "energy",
            "--quiet", "--workers", "0", "-o", str(out)]
    assert label_main(argv) == 0
    assert "1 labelled, 1 failed" in capsys.readouterr().err
    bad = frames.index(OVERLAPPING)
    assert [f.info["source_index"] for f in read_structures(out)] == [1 - bad]
    (entry,) = [json.loads(line) for line in out.with_name("labels.failures.jsonl").read_text().splitlines()]
    assert entry["index"] == bad and "overlaps" in entry["reason"]


def test_failures_are_retried_at_new_settings_and_the_message_says_how_at_the_same(tmp_path, capsys):
    out = tmp_path / "labels.extxyz"
    argv = [structures(tmp_path, WATER, WATER), "--method", "rhf", "--basis", "sto-3g", "--properties", "energy",
            "--quiet", "--workers", "0", "-o", str(out)]
    assert label_main([*argv, "--max-cycle", "1"]) == 0
    assert "0 labelled, 2 failed" in capsys.readouterr().err
    assert label_main([*argv, "--max-cycle", "1"]) == 0  # the same settings would fail the same way: skipped
    err = capsys.readouterr().err
    assert "0 labelled, 0 failed, 0 labelled before, 2 skipped as failed before at these settings" in err
    assert "--retry-failures tries them again" in err
    assert label_main([*argv, "--max-cycle", "50"]) == 0  # the settings that failed them changed: retried
    assert "2 labelled, 0 failed" in capsys.readouterr().err
    assert [f.info["source_index"] for f in read_structures(out)] == [0, 1]
