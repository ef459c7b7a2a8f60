"""pickwise.utils.io: atomic writes leave no temporary file and give the usual file mode."""

from __future__ import annotations

import json
import os
import stat

import pytest

from pickwise.utils.io import atomic_write_bytes, atomic_write_json


def test_atomic_write_json_round_trip_and_no_leftovers(tmp_path):
    path = tmp_path / "sub" / "result.json"
    atomic_write_json(path, {"a": 1.5, "b": [1, 2]})
    assert json.loads(path.read_text()) == {"a": 1.5, "b": [1, 2]}
    assert [p.name for p in path.parent.iterdir()] == ["result.json"]


@pytest.mark.skipif(not hasattr(os, "fchmod"), reason="POSIX file modes")
@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_atomic_write_gives_the_mode_of_a_plain_open(tmp_path, umask):
    old = os.umask(umask)
    try:
        atomic_write_bytes(tmp_path / "atomic.bin", b"x")
        (tmp_path / "plain.bin").write_bytes(b"x")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "atomic.bin").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain.bin").stat().st_mode) == 0o666 & ~umask


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(TypeError):
        atomic_write_bytes(tmp_path / "bad.bin", "not bytes")  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []
