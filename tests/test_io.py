"""Tests of the atomic file helpers in fiq_env.io."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fiq_env.errors import DataError
from fiq_env.io import atomic_write, read_json, umask_mode, write_json


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_write_json_round_trip(tmp_path: Path) -> None:
    write_json(tmp_path / "sub" / "data.json", {"a": [1, 2]})
    assert read_json(tmp_path / "sub" / "data.json") == {"a": [1, 2]}


def test_atomic_write_follows_umask(tmp_path: Path, umask_022) -> None:
    # mkstemp creates 0600 files, but the published file must get the mode open() would give.
    write_json(tmp_path / "data.json", {})
    assert (tmp_path / "data.json").stat().st_mode & 0o777 == 0o644


def test_umask_mode_masks_bits(umask_022) -> None:
    assert umask_mode(0o777) == 0o755
    assert umask_mode(0o666) == 0o644


def test_atomic_write_failure_keeps_old_file(tmp_path: Path) -> None:
    target = tmp_path / "data.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_write(target) as handle:
        handle.write(b"new, partly written")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old"
    assert [path.name for path in tmp_path.iterdir()] == ["data.bin"]


def test_read_json_malformed_names_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(DataError, match="broken.json"):
        read_json(path)
