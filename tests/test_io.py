import os
import stat

import pytest

from repghost.io import atomic_path, atomic_torch_save, atomic_write_json


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
