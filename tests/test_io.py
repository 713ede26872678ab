"""Atomic, durable writes: fsync before the rename, the user's umask, stale temporaries removed."""

import os
import stat

import pytest

from pipeline import io


def test_atomic_path_fsyncs_the_file_and_its_folder_before_publishing(tmp_path, monkeypatch):
    synced = []
    real = os.fsync

    def spy(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    target = tmp_path / "out" / "a.json"
    io.write_json(target, {"x": 1})
    assert target.exists() and len(synced) == 2
    assert synced[0].startswith(str(target.parent / ".a.json.")) and synced[0].endswith(".tmp")  # the file, before the rename
    assert synced[1] == str(target.parent)  # then the folder that now names it


def test_outputs_get_the_users_umask(tmp_path):
    old = os.umask(0o022)
    try:
        io.write_text(tmp_path / "f.txt", "x")
        with io.atomic_dir(tmp_path / "d") as d:
            (d / "g").write_text("y")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == 0o644  # mkstemp alone gives 0600
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755


def test_a_killed_writers_temporaries_are_removed_by_the_next_write(tmp_path):
    (tmp_path / ".a.json.k1ll3d.tmp").write_text("half")
    (tmp_path / ".ab.json.other.tmp").write_text("another target's")
    (tmp_path / ".enc.x1.tmp").mkdir()
    io.write_json(tmp_path / "a.json", {})
    with io.atomic_dir(tmp_path / "enc") as d:
        (d / "f").write_text("1")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [".ab.json.other.tmp", "a.json", "enc"]


def test_atomic_dir_replaces_a_folder_whole_and_keeps_the_old_one_on_failure(tmp_path):
    target = tmp_path / "encoder"
    with io.atomic_dir(target) as d:
        (d / "config.json").write_text("old")
        (d / "extra").write_text("only in the old one")
    with pytest.raises(RuntimeError):
        with io.atomic_dir(target) as d:
            (d / "config.json").write_text("new, half written")
            raise RuntimeError("killed")
    assert (target / "config.json").read_text() == "old"
    with io.atomic_dir(target) as d:
        (d / "config.json").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["config.json"] and (target / "config.json").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["encoder"]
