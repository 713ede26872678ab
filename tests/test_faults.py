"""Faults at VitalDB scale: the cache belongs to its settings; transient faults fail the job, permanent
ones are recorded; a corrupt per-case file is that case's failure."""

import errno
import json

import h5py
import numpy as np
import pytest

from pipeline.data.download import download_batch
from pipeline.data.resample import resample_batch
from pipeline.data.windows import windows_batch
from pipeline.errors import TransientError
from tests.helpers import demo_section


def demo_params(seed=0, duration_s=150.0):
    section = demo_section(n_cases=8, duration_s=duration_s, seed=seed)
    return {"source": "demo", "demo": section, "download": None}


ROWS = [{"caseid": 1, "hr_bpm": 70.0}, {"caseid": 9, "hr_bpm": 80.0}]


def test_cached_case_files_belong_to_the_settings_that_made_them(tmp_path):
    out = tmp_path / "cases"
    first = download_batch(ROWS, demo_params(seed=0), out, tmp_path / "s.json")
    assert all(s["status"] == "ok" and not s.get("cached") for s in first.values())
    same = download_batch(ROWS, demo_params(seed=0), out, tmp_path / "s.json")
    assert all(s.get("cached") for s in same.values())  # unchanged settings never refetch
    assert [s["path"] for s in same.values()] == [s["path"] for s in first.values()]
    other = download_batch(ROWS, demo_params(seed=1), out, tmp_path / "s.json")
    assert all(s["status"] == "ok" and not s.get("cached") for s in other.values())  # a new seed: new files
    for a, b in zip(first.values(), other.values()):
        assert a["path"] != b["path"] and open(a["path"], "rb").read() != open(b["path"], "rb").read()
    longer = download_batch(ROWS, demo_params(seed=0, duration_s=200.0), out, tmp_path / "s.json")
    assert not any(s.get("cached") for s in longer.values())
    back = download_batch(ROWS, demo_params(seed=0), out, tmp_path / "s.json")
    assert all(s.get("cached") for s in back.values())  # switching back finds the first files again


def resample_params():
    return {"source": "demo", "demo": {"tracks": {"ppg": "SNUADC/PLETH", "ecg": "SNUADC/ECG_II"}},
            "signals": {"target_fs": 125, "saturation_min_run": 10, "max_case_hours": 24, "max_native_hz": 500}}


def test_a_full_disk_at_resampling_fails_the_job_and_records_nothing(tmp_path, monkeypatch):
    status = download_batch(ROWS, demo_params(), tmp_path / "cases", tmp_path / "d.json")
    import pipeline.data.resample as rs

    real = rs.write_resampled

    def full_disk(path, *a):
        if "9.h5" in str(path):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, *a)

    monkeypatch.setattr(rs, "write_resampled", full_disk)
    with pytest.raises(TransientError, match=r"cases 9 \(OSError: \[Errno 28\] No space left"):
        resample_batch(status, resample_params(), tmp_path / "rs", tmp_path / "r.json")
    assert not (tmp_path / "r.json").exists() and (tmp_path / "rs" / "1.h5").exists()  # case 1 done; no batch status
    monkeypatch.setattr(rs, "write_resampled", real)
    done = resample_batch(status, resample_params(), tmp_path / "rs", tmp_path / "r.json")
    assert {c: s["status"] for c, s in done.items()} == {"1": "ok", "9": "ok"}


def test_a_corrupt_case_file_is_a_permanent_skip(tmp_path):
    status = download_batch(ROWS, demo_params(), tmp_path / "cases", tmp_path / "d.json")
    with open(status["9"]["path"], "r+b") as f:  # bit rot after validation
        f.seek(100)
        f.write(b"\x00" * 64)
    done = resample_batch(status, resample_params(), tmp_path / "rs", tmp_path / "r.json")
    assert done["1"]["status"] == "ok" and done["9"]["status"] == "failed"
    assert json.loads((tmp_path / "r.json").read_text()) == done


def test_a_corrupt_resampled_file_is_that_cases_failure(tmp_path, config):
    status = download_batch(ROWS, demo_params(), tmp_path / "cases", tmp_path / "d.json")
    done = resample_batch(status, resample_params(), tmp_path / "rs", tmp_path / "r.json")
    (tmp_path / "rs" / "9.h5").write_bytes(b"not hdf5")
    rows = [{"caseid": c, "subjectid": c, "split": "train"} for c in (1, 9)]
    params = {"tracks": ["SNUADC/PLETH", "SNUADC/ECG_II"], **{k: config[k] for k in ("signals", "window", "quality")}}
    shards = {s: tmp_path / "w" / s / "shard-0000.h5" for s in ("train", "val", "test")}
    stats = windows_batch(rows, done, params, shards, tmp_path / "stats.json", 0)
    assert stats["1"]["kept"] > 0 and "unreadable resampled file" in stats["9"]["skip_reason"]
    with h5py.File(shards["train"]) as f:
        assert set(np.unique(f["caseid"][()])) == {1}


def test_a_killed_downloads_temporary_file_is_gone_after_the_next_run(tmp_path):
    from pipeline.data.sources import get_source

    dest = get_source(demo_params()).case_file(tmp_path / "cases", 1)
    dest.parent.mkdir(parents=True)
    (dest.parent / f".{dest.name}.k1ll3d.tmp").write_bytes(b"half a file")
    download_batch(ROWS, demo_params(), tmp_path / "cases", tmp_path / "s.json")
    assert sorted(p.name for p in dest.parent.iterdir()) == ["1.vital", "9.vital"]
