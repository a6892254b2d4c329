import json
import os
import shutil
import stat
import tempfile

import pytest

from repghost.io import (
    atomic_path,
    atomic_torch_save,
    atomic_write_json,
    discard_on_failure,
    discard_pending,
    scratch_dir,
)


def test_atomic_write_leaves_an_ordinary_file_and_no_temporaries(tmp_path):
    target = atomic_write_json(tmp_path / "sub" / "m.json", {"a": 1})
    assert target.read_text().strip().startswith("{")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask
    atomic_torch_save({"x": 1}, tmp_path / "c.pt")
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["c.pt", "m.json"]


def test_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "keep.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_scratch_dir_is_removed_on_success_error_and_ctrl_c(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with scratch_dir("bench") as work:
        (work / "model.onnx").write_bytes(b"x")
        assert work.parent == tmp_path and work.name.startswith("repghost-bench-")
    for stop in (RuntimeError, KeyboardInterrupt):
        with pytest.raises(stop), scratch_dir("bench") as work:
            (work / "model.onnx").write_bytes(b"x")
            raise stop
    assert list(tmp_path.iterdir()) == []


def test_what_an_interrupted_cleanup_leaves_is_removed_by_discard_pending(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    real_rmtree = shutil.rmtree

    def ctrl_c_during_removal(path, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(shutil, "rmtree", ctrl_c_during_removal)
    with pytest.raises(KeyboardInterrupt), scratch_dir("bench") as work:
        (work / "model.onnx").write_bytes(b"x")
    target = tmp_path / "out.json"
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as staged:
        staged.write_text("half")
        raise KeyboardInterrupt
    assert [p.name for p in tmp_path.iterdir()] == [work.name]  # the staged file went; the directory stayed
    monkeypatch.setattr(shutil, "rmtree", real_rmtree)
    assert discard_pending() == [work]
    assert list(tmp_path.iterdir()) == [] and discard_pending() == []


def test_discard_on_failure_removes_what_the_block_wrote_and_keeps_the_rest(tmp_path):
    model, untouched, new = tmp_path / "m.onnx", tmp_path / "m.int8.onnx", tmp_path / "m.onnx.repghost.json"
    model.write_text("old model")
    untouched.write_text("an int8 model of an earlier export")
    with pytest.raises(KeyboardInterrupt), discard_on_failure([model, untouched, new]):
        atomic_write_json(model, {"new": 1})
        atomic_write_json(new, {})
        raise KeyboardInterrupt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.int8.onnx"] and untouched.read_text().startswith("an")
    with discard_on_failure([model, new]):
        atomic_write_json(model, {"new": 2})
    assert json.loads(model.read_text()) == {"new": 2}


def test_read_format_json_refuses_an_unreadable_file_and_another_format(tmp_path):
    from repghost.io import read_format_json

    good = tmp_path / "good.json"
    good.write_text('{"format": "repghost-x/1", "value": 3}')
    assert read_format_json(good, "repghost-x/1", ValueError, "x file")["value"] == 3
    with pytest.raises(ValueError, match=r"not a x file \(format 'repghost-y/1'\)"):
        read_format_json(good, "repghost-y/1", ValueError, "x file")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(KeyError, match="not a readable x file"):
        read_format_json(tmp_path / "bad.json", "repghost-x/1", KeyError, "x file")
    with pytest.raises(ValueError, match="not a readable x file"):
        read_format_json(tmp_path / "missing.json", "repghost-x/1", ValueError, "x file")


def test_jsonl_records_survive_a_torn_last_line_and_refuse_a_corrupt_one(tmp_path):
    from repghost.io import append_jsonl, read_jsonl

    path = tmp_path / "scores.jsonl"
    assert read_jsonl(path) == []
    append_jsonl(path, {"label": "a", "proxy": 1.5})
    append_jsonl(path, {"label": "b", "proxy": 2.5})
    with open(path, "a") as f:
        f.write('{"label": "c", "pro')  # a run stopped mid-write
    assert read_jsonl(path) == [{"label": "a", "proxy": 1.5}, {"label": "b", "proxy": 2.5}]
    path.write_text('{"label": "a"}\n{not json\n{"label": "b"}\n')
    with pytest.raises(ValueError, match=r"scores.jsonl:2: not a JSON record"):
        read_jsonl(path)
