import json
import logging

import numpy as np
import pytest

from pipeline.cases import build_case_table
from pipeline.sources.demo import synth_signals, write_vital
from pipeline.download import download_batch
from tests.httpserver import FaultyServer

TRACKS = {"ppg": "SNUADC/PLETH", "ecg": "SNUADC/ECG_II"}


def vital_bytes(tmp_path, caseid, tracks=("SNUADC/PLETH", "SNUADC/ECG_II")):
    ppg, ecg = synth_signals(70.0, 30.0, np.random.default_rng(caseid))
    p = tmp_path / f"src-{caseid}.vital"
    write_vital(p, dict(zip(tracks, (ppg, ecg))), 500, 4102444800.0)
    return p.read_bytes()


def params(url, timeout=0.5, retries=3):
    return {
        "source": "vitaldb",
        "vitaldb": {"api_url": url, "dataset_version": "1.0.1", "tracks": TRACKS},
        "download": {"timeout_s": timeout, "retries": retries, "backoff_s": 0.01},
    }


@pytest.fixture
def served(tmp_path):
    files = {f"/1.0.1/{c}.vital": vital_bytes(tmp_path, c) for c in range(1, 8)}
    files["/1.0.1/6.vital"] = files["/1.0.1/6.vital"][:5000]  # served complete, but the file itself is cut short
    files["/1.0.1/7.vital"] = vital_bytes(tmp_path, 7, tracks=("SNUADC/PLETH", "SNUADC/ART"))
    script = {
        "/1.0.1/1.vital": ["500", "500", "ok"],  # 5xx then success
        "/1.0.1/2.vital": ["truncate", "ok"],  # a broken body, then success
        "/1.0.1/3.vital": ["stall", "ok"],  # a stall past the timeout, then success
        "/1.0.1/4.vital": ["404"],  # gone
        "/1.0.1/5.vital": ["truncate"] * 10,  # always broken
    }
    return files, script


def test_faults_are_retried_recorded_and_never_left_at_the_output(tmp_path, served, caplog):
    files, script = served
    out = tmp_path / "vital"
    rows = [{"caseid": c} for c in range(1, 9)]  # 8 is not served at all
    with FaultyServer(files, script, stall_s=1.5) as srv, caplog.at_level(logging.WARNING):
        status = download_batch(rows, params(srv.url), out, tmp_path / "status.json")
        requests = dict(srv.requests)

    assert json.loads((tmp_path / "status.json").read_text()) == status
    for c in (1, 2, 3):
        assert status[str(c)]["status"] == "ok", status[str(c)]
        assert (out / f"{c}.vital").read_bytes() == files[f"/1.0.1/{c}.vital"]
    assert requests["/1.0.1/1.vital"] == 3  # two 503s retried
    assert requests["/1.0.1/2.vital"] == 2 and requests["/1.0.1/3.vital"] == 2
    assert requests["/1.0.1/5.vital"] == 4  # 1 + 3 retries, then given up

    reasons = {c: status[str(c)].get("reason", "") for c in range(4, 9)}
    assert "HTTP 404" in reasons[4]
    assert "body failed after 4 attempts" in reasons[5]
    assert "truncated gzip" in reasons[6]
    assert "missing track SNUADC/ECG_II" in reasons[7]
    assert "HTTP 404" in reasons[8]
    for c in range(4, 9):
        assert status[str(c)]["status"] == "failed" and not (out / f"{c}.vital").exists()
    assert sorted(p.name for p in out.iterdir()) == ["1.vital", "2.vital", "3.vital"]  # no temp files left
    assert "case 5 skipped" in caplog.text


def test_existing_valid_files_are_not_downloaded_again(tmp_path, served):
    files, _ = served
    rows = [{"caseid": 1}]
    with FaultyServer(files) as srv:
        download_batch(rows, params(srv.url), tmp_path / "v", tmp_path / "s.json")
        download_batch(rows, params(srv.url), tmp_path / "v", tmp_path / "s.json")
        assert srv.requests["/1.0.1/1.vital"] == 1


def test_vitaldb_case_table_from_the_api(served):
    clinical = "caseid,subjectid,casestart,caseend,age,sex\n1,11,0,3600,60,M\n2,12,0,7200,45,F\n3,11,0,100,60,M\n"
    trks = "caseid,tname,tid\n1,SNUADC/PLETH,a\n1,SNUADC/ECG_II,b\n2,SNUADC/PLETH,c\n3,SNUADC/PLETH,d\n3,SNUADC/ECG_II,e\n"
    files = {"/cases": clinical.encode(), "/trks": trks.encode()}
    with FaultyServer(files, {"/cases": ["500", "ok"]}) as srv:
        cfg = {
            "source": "vitaldb", **params(srv.url),
            "cases": {"split": {"train": 0.8, "val": 0.1, "test": 0.1}, "split_salt": "s", "limit": None, "caseids": None, "batch_size": 64},
        }
        rows = build_case_table(cfg)
        assert srv.requests["/cases"] == 2
    assert [r["caseid"] for r in rows] == [1, 3]  # case 2 lacks ECG
    assert rows[0]["duration_s"] == 3600 and rows[0]["subjectid"] == "11"
    assert rows[0]["split"] == rows[1]["split"]  # same subject, same split


def test_local_release_source(tmp_path):
    root = tmp_path / "vitaldb-release"
    (root / "vital_files").mkdir(parents=True)
    (root / "vital_files" / "0001.vital").write_bytes(vital_bytes(tmp_path, 1))
    (root / "clinical_data.csv").write_text("caseid,subjectid,casestart,caseend\n1,5,0,30\n2,6,0,30\n")
    (root / "track_names.csv").write_text("caseid,tname\n1,SNUADC/PLETH\n1,SNUADC/ECG_II\n2,SNUADC/PLETH\n2,SNUADC/ECG_II\n")
    cfg = {
        "source": "local", "local": {"root": str(root), "tracks": TRACKS},
        "cases": {"split": {"train": 1.0, "val": 0.0, "test": 0.0}, "split_salt": "s", "limit": None, "caseids": None, "batch_size": 64},
        "download": {"timeout_s": 1, "retries": 0, "backoff_s": 0},
    }
    rows = build_case_table(cfg)
    assert [r["caseid"] for r in rows] == [1, 2] and {r["split"] for r in rows} == {"train"}
    status = download_batch(rows, cfg, tmp_path / "vital", tmp_path / "s.json")
    assert status["1"]["status"] == "ok" and (tmp_path / "vital" / "1.vital").is_symlink()
    assert status["2"]["status"] == "failed" and "missing file" in status["2"]["reason"]
