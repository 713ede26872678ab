import errno
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import pipeline.data.http
from pipeline.data.cases import build_case_table, write_table
from pipeline.data.download import FailedFractionError, download_batch
from pipeline.data.sources.demo import synth_signals, write_vital
from pipeline.errors import TransientError
from tests.conftest import REPO
from tests.httpserver import FaultyServer

TRACKS = {"ppg": "SNUADC/PLETH", "ecg": "SNUADC/ECG_II"}


def vital_bytes(tmp_path, caseid, tracks=("SNUADC/PLETH", "SNUADC/ECG_II")):
    ppg, ecg = synth_signals(70.0, 30.0, np.random.default_rng(caseid))
    p = tmp_path / f"src-{caseid}.vital"
    write_vital(p, dict(zip(tracks, (ppg, ecg))), 500, 4102444800.0)
    return p.read_bytes()


def params(url, timeout=0.5, retries=3, version="1.0.1", tracks=TRACKS, **download):
    return {
        "source": "vitaldb",
        "vitaldb": {"api_url": url, "dataset_version": version, "tracks": tracks},
        "download": {"timeout_s": timeout, "retries": retries, "backoff_s": 0.01, "deadline_s": 5.0, "retry_after_max_s": 5.0,
                     "max_failed_fraction": 0.2, **download},
    }


def vital(c):
    return f"/1.0.1/{c}.vital"


def case_files(out):
    """Every file under the download folder (published files and any temporary leftovers)."""
    return sorted(p.name for p in Path(out).rglob("*") if p.is_file())


@pytest.fixture
def served(tmp_path):
    files = {vital(c): vital_bytes(tmp_path, c) for c in range(1, 8)}
    files[vital(6)] = files[vital(6)][:5000]  # served complete, but the file itself is cut short
    files[vital(7)] = vital_bytes(tmp_path, 7, tracks=("SNUADC/PLETH", "SNUADC/ART"))
    files[vital(9)] = files[vital(1)]
    script = {
        vital(1): ["500", "500", "ok"],  # 5xx then success
        vital(2): ["truncate", "ok"],  # a broken body, then success
        vital(3): ["stall", "ok"],  # a stall past the timeout, then success
        vital(4): ["404"],  # gone
        vital(9): ["410"],  # gone for good
    }
    return files, script


def test_faults_are_retried_and_permanent_ones_recorded(tmp_path, served, caplog):
    files, script = served
    out = tmp_path / "vital"
    rows = [{"caseid": c} for c in (1, 2, 3, 4, 6, 7, 8, 9)]  # 8 is not served at all
    with FaultyServer(files, script, stall_s=1.5) as srv, caplog.at_level(logging.WARNING):
        status = download_batch(rows, params(srv.url, max_failed_fraction=1.0), out, tmp_path / "status.json")
        requests = dict(srv.requests)

    assert json.loads((tmp_path / "status.json").read_text()) == status
    for c in (1, 2, 3):
        assert status[str(c)]["status"] == "ok", status[str(c)]
        assert Path(status[str(c)]["path"]).read_bytes() == files[vital(c)]
    assert requests[vital(1)] == 3  # two 503s retried
    assert requests[vital(2)] == 2 and requests[vital(3)] == 2

    reasons = {c: status[str(c)].get("reason", "") for c in (4, 6, 7, 8, 9)}
    assert "HTTP 404" in reasons[4] and "HTTP 404" in reasons[8] and "HTTP 410" in reasons[9]
    assert "truncated gzip" in reasons[6]
    assert "missing track SNUADC/ECG_II" in reasons[7]
    for c in (4, 6, 7, 8, 9):
        assert status[str(c)]["status"] == "failed" and status[str(c)]["stage"] == "download"
        assert requests[vital(c)] == 1  # a permanent fault is not retried
    assert case_files(out) == ["1.vital", "2.vital", "3.vital"]  # no temp files left
    assert "case 7 skipped" in caplog.text
    assert not (tmp_path / "status.json.partial").exists()


def test_a_body_that_keeps_breaking_is_transient_and_retried_once_per_budget(tmp_path, served):
    """Retries are not nested: 503s before each broken body share the one budget (today: (1+2)**2)."""
    files, _ = served
    rows = [{"caseid": 1}, {"caseid": 5}]
    script = {vital(5): ["503", "503", "truncate"] * 3}
    with FaultyServer(files, script) as srv:
        with pytest.raises(TransientError, match=r"case 5: GET \S+/5.vital: body failed .*after 2 retries"):
            download_batch(rows, params(srv.url, retries=2), tmp_path / "v", tmp_path / "s.json")
        assert srv.requests[vital(5)] == 3
    assert not (tmp_path / "s.json").exists() and case_files(tmp_path / "v") == ["1.vital"]


def test_a_case_503_beyond_the_budget_fails_the_job_and_a_rerun_fetches_only_it(tmp_path, served):
    files, _ = served
    rows = [{"caseid": c} for c in (1, 2, 3, 8)]  # 8 is not served: 404, permanent
    out, status_path = tmp_path / "v", tmp_path / "batch-0.json"
    with FaultyServer(files, {vital(3): ["503"] * 4}) as srv:  # 1 + 3 retries, all 503
        with pytest.raises(TransientError, match=r"1 of 4 cases .*case 3: GET \S+/3.vital: .*503"):
            download_batch(rows, params(srv.url), out, status_path)
        assert not status_path.exists()  # Snakemake sees the job failed; its output is missing
        assert srv.requests[vital(3)] == 4 and case_files(out) == ["1.vital", "2.vital"]
        kept = {c: Path(out).rglob(f"{c}.vital").__next__().stat().st_mtime_ns for c in (1, 2)}
        first = dict(srv.requests)

        status = download_batch(rows, params(srv.url), out, status_path)  # the server has recovered
        again = {p: srv.requests[p] - first.get(p, 0) for p in srv.requests}
    assert {p: n for p, n in again.items() if n} == {vital(3): 1}  # only case 3 is asked again, not case 8 (404)
    assert status["3"]["status"] == "ok" and Path(status["3"]["path"]).read_bytes() == files[vital(3)]
    assert status["1"]["cached"] and status["2"]["cached"]
    assert {c: Path(status[str(c)]["path"]).stat().st_mtime_ns for c in (1, 2)} == kept
    assert status["8"] == {"status": "failed", "stage": "download", "reason": f"GET {srv.url}/1.0.1/8.vital: HTTP 404"}
    assert json.loads(status_path.read_text()) == status
    assert not (tmp_path / "batch-0.json.partial").exists()


def test_permanent_failures_are_kept_for_the_rerun_only_with_the_same_settings(tmp_path, served):
    files, _ = served
    rows = [{"caseid": 8}, {"caseid": 5}]
    with FaultyServer(files, {vital(5): ["503"] * 4}) as srv:
        with pytest.raises(TransientError):
            download_batch(rows, params(srv.url), tmp_path / "v", tmp_path / "s.json")
        assert json.loads((tmp_path / "s.json.partial").read_text())["failed"].keys() == {"8"}
        srv.set_script(vital(5), ["503"] * 4)
        with pytest.raises(TransientError):  # other settings: case 8 is asked again
            download_batch(rows, params(srv.url, tracks={"ppg": "SNUADC/PLETH", "ecg": "SNUADC/ECG_V"}), tmp_path / "v", tmp_path / "s.json")
        assert srv.requests[vital(8)] == 2


def test_the_command_fails_naming_the_transient_case_and_a_rerun_completes(tmp_path, served):
    files, _ = served
    clinical = "caseid,subjectid,casestart,caseend,age,sex\n1,11,0,30,60,M\n2,12,0,30,45,F\n"
    trks = "caseid,tname,tid\n" + "".join(f"{c},{t},x\n" for c in (1, 2) for t in TRACKS.values())
    files = {**files, "/cases": clinical.encode(), "/trks": trks.encode()}
    with FaultyServer(files, {vital(2): ["503"] * 4}) as srv:
        p = params(srv.url)
        cases_cfg = {"split": {"train": 1.0, "val": 0.0, "test": 0.0}, "split_salt": "s", "limit": None, "caseids": None, "batch_size": 64}
        write_table(tmp_path / "cases.tsv", build_case_table({**p, "cases": cases_cfg}))
        cmd = [sys.executable, "-m", "pipeline", "download", "--params", json.dumps(p), "--cases", str(tmp_path / "cases.tsv"),
               "--batch", "0", "--outdir", str(tmp_path / "v"), "--status", str(tmp_path / "s.json")]
        first = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
        assert first.returncode != 0 and not (tmp_path / "s.json").exists()
        assert "case 2: GET" in first.stderr and "503" in first.stderr, first.stderr[-2000:]
        assert srv.requests[vital(1)] == 1 and srv.requests[vital(2)] == 4

        second = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
        assert second.returncode == 0, second.stderr[-2000:]
        assert srv.requests[vital(1)] == 1 and srv.requests[vital(2)] == 5
    status = json.loads((tmp_path / "s.json").read_text())
    assert {c: s["status"] for c, s in status.items()} == {"1": "ok", "2": "ok"}


def test_a_full_disk_while_writing_is_transient_not_a_recorded_failure(tmp_path, served, monkeypatch):
    files, _ = served
    rows = [{"caseid": c} for c in (1, 2, 3)]
    real_open = open

    class FullDisk:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def seek(self, *a):
            return self.f.seek(*a)

        def truncate(self, *a):
            return self.f.truncate(*a)

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    def full_for_case_2(path, *a, **k):
        f = real_open(path, *a, **k)
        return FullDisk(f) if Path(path).name.startswith(".2.vital.") else f

    monkeypatch.setattr(pipeline.data.http, "open", full_for_case_2, raising=False)
    with FaultyServer(files) as srv:
        with pytest.raises(TransientError, match=r"case 2: OSError: \[Errno 28\] No space left on device"):
            download_batch(rows, params(srv.url), tmp_path / "v", tmp_path / "s.json")
        assert srv.requests[vital(2)] == 1  # a full disk is not retried against the server
        assert not (tmp_path / "s.json").exists() and case_files(tmp_path / "v") == ["1.vital", "3.vital"]

        monkeypatch.undo()
        status = download_batch(rows, params(srv.url), tmp_path / "v", tmp_path / "s.json")
        assert {c: s["status"] for c, s in status.items()} == {"1": "ok", "2": "ok", "3": "ok"}
        assert dict(srv.requests) == {vital(1): 1, vital(2): 2, vital(3): 1}


def test_max_failed_fraction_names_what_the_failures_share(tmp_path):
    art = {vital(c): vital_bytes(tmp_path, c, tracks=("SNUADC/PLETH", "SNUADC/ART")) for c in range(1, 9)}
    rows = [{"caseid": c} for c in range(1, 9)]
    with FaultyServer(art) as srv:
        with pytest.raises(FailedFractionError, match=r"8 of 8 cases failed permanently.*all: 8 with 'missing track SNUADC/ECG_II' "
                                                      r"\(cases 1, 2, .*, 8\): the track names are probably wrong: check vitaldb.tracks"):
            download_batch(rows, params(srv.url), tmp_path / "v", tmp_path / "s.json")
        with pytest.raises(FailedFractionError, match=r"8 of 8 .*all: 8 with 'GET <url>: HTTP 404'.*dataset version"):
            download_batch(rows, params(srv.url, version="9.9.9"), tmp_path / "v", tmp_path / "s.json")
    assert not (tmp_path / "s.json").exists()


def test_max_failed_fraction_leaves_small_batches_and_a_few_bad_cases_alone(tmp_path, served):
    files, _ = served
    with FaultyServer(files) as srv:
        two_bad = download_batch([{"caseid": 6}, {"caseid": 8}], params(srv.url), tmp_path / "v", tmp_path / "a.json")
        one_in_four = download_batch([{"caseid": c} for c in (1, 2, 3, 7)], params(srv.url), tmp_path / "v", tmp_path / "b.json")
    assert [s["status"] for s in two_bad.values()] == ["failed", "failed"]  # below the minimum of 3
    assert [s["status"] for s in one_in_four.values()] == ["ok", "ok", "ok", "failed"]


def test_a_trickling_server_is_cut_off_at_the_deadline(tmp_path):
    files = {vital(1): b"x" * 200}  # a byte every 50 ms: 10 s for the whole body
    with FaultyServer(files, {vital(1): ["trickle"] * 10}, trickle_s=0.05) as srv:
        t0 = time.monotonic()
        with pytest.raises(TransientError, match=r"case 1: .*deadline_s=0.4.*after 2 retries"):
            download_batch([{"caseid": 1}], params(srv.url, retries=2, deadline_s=0.4), tmp_path / "v", tmp_path / "s.json")
        elapsed = time.monotonic() - t0
        times = srv.times[vital(1)]
    assert len(times) == 3  # 1 + retries, not (1 + retries) ** 2
    gaps = np.diff(times + [t0 + elapsed])
    assert all(0.4 <= g < 0.8 for g in gaps), gaps  # each attempt is cut at deadline_s (+ one trickle step)


def test_retry_after_is_honoured_up_to_its_cap(tmp_path, served):
    files, _ = served
    with FaultyServer(files, {vital(1): ["503:1"], vital(2): ["429:4"]}) as srv:
        download_batch([{"caseid": 1}], params(srv.url, retry_after_max_s=5.0), tmp_path / "v", tmp_path / "a.json")
        download_batch([{"caseid": 2}], params(srv.url, retry_after_max_s=0.3), tmp_path / "v", tmp_path / "b.json")
        t1, t2 = srv.times[vital(1)], srv.times[vital(2)]
    assert len(t1) == len(t2) == 2
    assert 1.0 <= t1[1] - t1[0] < 1.8  # Retry-After: 1 (backoff alone would retry at once)
    assert 0.3 <= t2[1] - t2[0] < 1.0  # Retry-After: 4, capped at 0.3


def test_existing_valid_files_are_not_downloaded_again(tmp_path, served):
    files, _ = served
    rows = [{"caseid": 1}]
    with FaultyServer(files) as srv:
        download_batch(rows, params(srv.url), tmp_path / "v", tmp_path / "s.json")
        download_batch(rows, params(srv.url), tmp_path / "v", tmp_path / "s.json")
        assert srv.requests[vital(1)] == 1


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
    assert status["1"]["status"] == "ok" and Path(status["1"]["path"]).is_symlink()
    assert status["2"]["status"] == "failed" and "missing file" in status["2"]["reason"]


# ----------------------------------------------------------------------------- issue 21: a way out
def test_a_transient_fault_that_never_clears_is_given_up_after_max_failed_runs(tmp_path, served):
    """A server that cuts case 5's body on every request: runs 1-2 fail naming it (nothing
    recorded), run 3 records it as given up with the last reason and the batch completes; the
    other cases are fetched once and never asked again."""
    files, _ = served
    rows = [{"caseid": c} for c in (1, 5, 8)]  # 8: 404, permanent
    p = params("", retries=0, max_failed_runs=3)
    with FaultyServer(files, {vital(5): ["truncate"] * 100}) as srv:
        p["vitaldb"]["api_url"] = srv.url
        for run in (1, 2):
            with pytest.raises(TransientError, match=r"case 5: GET \S+/5.vital: body failed"):
                download_batch(rows, p, tmp_path / "v", tmp_path / "s.json")
            assert not (tmp_path / "s.json").exists()
            assert json.loads((tmp_path / "s.json.partial").read_text())["transient_runs"] == {"5": run}
        status = download_batch(rows, p, tmp_path / "v", tmp_path / "s.json")
        assert dict(srv.requests) == {vital(1): 1, vital(5): 3, vital(8): 1}
    assert status["1"]["status"] == "ok" and status["8"]["status"] == "failed"
    assert status["5"]["status"] == "failed" and status["5"]["gave_up"]
    assert status["5"]["reason"].startswith("gave up after 3 runs (download.max_failed_runs)") and "body failed" in status["5"]["reason"]
    assert not (tmp_path / "s.json.partial").exists()


def test_the_run_count_starts_again_when_the_fault_clears(tmp_path, served):
    files, _ = served
    with FaultyServer(files, {vital(5): ["truncate", "ok", "truncate", "truncate"]}) as srv:
        p = params(srv.url, retries=0, max_failed_runs=2)
        with pytest.raises(TransientError):
            download_batch([{"caseid": 5}], p, tmp_path / "v", tmp_path / "s.json")
        assert download_batch([{"caseid": 5}], p, tmp_path / "v", tmp_path / "s.json")["5"]["status"] == "ok"
        (tmp_path / "s.json").unlink()
        for path in (tmp_path / "v").rglob("5.vital"):
            path.unlink()
        with pytest.raises(TransientError):  # one failed run again: not given up (the count started again)
            download_batch([{"caseid": 5}], p, tmp_path / "v", tmp_path / "s.json")


def test_excluded_cases_are_never_fetched_and_recorded_as_excluded(tmp_path, served):
    files, _ = served
    with FaultyServer(files) as srv:
        rows = [{"caseid": 1}, {"caseid": 2, "excluded": True}, {"caseid": 3, "excluded": False}]
        status = download_batch(rows, params(srv.url), tmp_path / "v", tmp_path / "s.json")
        assert vital(2) not in srv.requests
    assert status["2"] == {"status": "excluded", "stage": "download", "reason": "excluded (cases.exclude)"}
    assert status["1"]["status"] == status["3"]["status"] == "ok"


def test_an_unexpected_error_while_validating_is_that_cases_failure_and_counted(tmp_path, served, monkeypatch):
    """A fault no rule foresaw (here a bug: ZeroDivisionError) ends as the case's permanent failure,
    named 'unexpected error' with its type; the batch goes on."""
    from pipeline.data.sources._vital import VitalFileSource

    files, _ = served
    real = VitalFileSource.validate

    def buggy(self, path, max_samples=float("inf")):
        if path.name.startswith(".2."):
            raise ZeroDivisionError("division by zero")
        return real(self, path, max_samples)

    monkeypatch.setattr(VitalFileSource, "validate", buggy)
    with FaultyServer(files) as srv:
        status = download_batch([{"caseid": c} for c in (1, 2, 3)], params(srv.url), tmp_path / "v", tmp_path / "s.json")
    assert status["2"] == {"status": "failed", "stage": "download", "unexpected": "ZeroDivisionError",
                           "reason": "unexpected error: ZeroDivisionError: division by zero"}
    assert status["1"]["status"] == status["3"]["status"] == "ok"


@pytest.mark.slow
def test_the_workflow_completes_a_batch_whose_case_is_always_cut(tmp_path, served):
    """Through Snakemake (the download rule, `--retries 0`, three invocations): the first two fail
    naming case 2, the third records it as given up and the batch completes; case 1 is fetched once."""
    import os

    import yaml

    files, _ = served
    clinical = "caseid,subjectid,casestart,caseend,age,sex\n1,11,0,30,60,M\n2,12,0,30,45,F\n"
    trks = "caseid,tname,tid\n" + "".join(f"{c},{t},x\n" for c in (1, 2) for t in TRACKS.values())
    files = {**files, "/cases": clinical.encode(), "/trks": trks.encode()}
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg["ablations"] = {"variants": {}}
    with FaultyServer(files, {vital(2): ["truncate"] * 100}) as srv:
        cfg["source"] = "vitaldb"
        cfg["vitaldb"]["api_url"] = srv.url
        cfg["download"].update(timeout_s=2, retries=0, backoff_s=0.01, deadline_s=5, max_failed_runs=3)
        (tmp_path / "config").mkdir()
        (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
        env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
        cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow" / "Snakefile"), "-d", str(tmp_path),
               "--cores", "1", "--retries", "0", "resources/vitaldb/cases/batch-0000.json"]
        for run in (1, 2):
            r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
            log = (tmp_path / "logs" / "vitaldb" / "download" / "batch-0000.log").read_text()
            assert r.returncode != 0 and "case 2: GET" in log and f"run {run} of at most 3" in log, r.stderr[-3000:]
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        assert srv.requests[vital(1)] == 1 and srv.requests[vital(2)] == 3
    status = json.loads((tmp_path / "resources" / "vitaldb" / "cases" / "batch-0000.json").read_text())
    assert status["1"]["status"] == "ok" and status["2"]["gave_up"] and "gave up after 3 runs" in status["2"]["reason"]
