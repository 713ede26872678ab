"""Cut resampled cases into fixed-length two-channel windows, apply the quality rules, and write
HDF5 shards per split, plus per-case statistics for the manifest.

Shard contract (docs/design.md, "Shards"): `signals` float32 [N, 2, L] (channel 0 PPG, 1 ECG), `caseid`,
`subjectid`, `start_s` (seconds from the case's start), `hr_bpm` (ECG heart rate of the window);
attrs fs, window, channels, tracks, pipeline version, config digest; chunked (chunk, 2, L).

Examples for the QC gallery (`examples/batch-N.h5`, docs/design.md "Shards", pipeline/data/qc_report.py): per batch at most
`EXAMPLES_PER_GROUP` windows of each group ("kept", and each rule for the windows it rejected first),
at most one per case and group (the middle one), drawn by a reservoir seeded with the batch number:
`signals` [k, 2, L] as cut (NaNs kept), `group`, `failed` (every rule the window fails), `caseid`, `start_s`.
"""

from __future__ import annotations

import logging
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

import h5py
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from pipeline import __version__
from pipeline.channels import CHANNELS
from pipeline.config import SPLITS
from pipeline.data.quality import RULES, ecg_beats, first_rule_masks, heart_rate_from_beats, rule_masks
from pipeline.data.resample import read_resampled
from pipeline.errors import classify
from pipeline.io import atomic_path, digest, progress, read_json, write_json

log = logging.getLogger(__name__)


def cut(x: np.ndarray, length: int, stride: int) -> np.ndarray:
    """Windows [n, C, length] of a [C, T] array (a view); n = (T - length) // stride + 1."""
    if x.shape[-1] < length:
        return np.empty((0, x.shape[0], length), dtype=x.dtype)
    return sliding_window_view(x, length, axis=-1)[:, ::stride].transpose(1, 0, 2)


EXAMPLES_PER_GROUP = 4
EXAMPLE_GROUPS = ("kept", *RULES)


def window_case(signals: np.ndarray, saturated: np.ndarray, fs: float, window_cfg: dict, quality_cfg: dict,
                examples: list | None = None):
    """Windows of one case that pass every rule, with their start times, heart rates and stats. With
    `examples`, (group, window, failed rules, start_s) of the middle window of each group is appended to it."""
    L, stride = window_cfg["length"], window_cfg["stride"]
    win = cut(signals, L, stride)
    sat = cut(saturated, L, stride)
    n = win.shape[0]
    stats = {"cut": n, "kept": 0, "rejected": {r: 0 for r in RULES}, "failed": {r: 0 for r in RULES}}
    if n == 0:
        return np.empty((0, 2, L), np.float32), np.empty(0), np.empty(0, np.float32), stats
    beats = ecg_beats(win[:, 1], fs)  # R-peaks once: the stored heart rate and the rules' share them
    hr = heart_rate_from_beats(beats, n, fs)
    masks = rule_masks(win, sat, fs, quality_cfg, hr=hr, beats=beats)
    keep, first = first_rule_masks(masks)
    attributed = {rule: int(m.sum()) for rule, m in first.items()}
    if examples is not None:
        _case_examples(win, masks, {"kept": keep, **first}, stride, fs, examples)
    stats.update(kept=int(keep.sum()), rejected=attributed, failed={r: int(m.sum()) for r, m in masks.items()})
    starts = np.flatnonzero(keep) * stride / fs
    return np.ascontiguousarray(win[keep], dtype=np.float32), starts, hr[keep].astype(np.float32), stats


def _case_examples(win: np.ndarray, masks: dict, groups: dict, stride: int, fs: float, out: list) -> None:
    """The middle window of each group ({group: mask}) of one case, appended to `out` as a copy (a view
    would keep the whole case in memory until the batch ends), with its start time as the shards write it."""
    for group, mask in groups.items():
        idx = np.flatnonzero(mask)
        if len(idx):
            i = idx[len(idx) // 2]
            failed = ",".join(r for r in RULES if masks[r][i])
            out.append((group, np.array(win[i], dtype=np.float32, copy=True), failed, float(i * stride / fs)))


def _sample_examples(candidates: list, batch: int) -> list:
    """At most EXAMPLES_PER_GROUP of each group's candidates [(caseid, (group, window, failed, start_s))],
    a reservoir sample seeded by the batch (the same on every rerun)."""
    rng = np.random.default_rng(batch)
    chosen, seen = {g: [] for g in EXAMPLE_GROUPS}, Counter()
    for item in candidates:
        group = item[1][0]
        seen[group] += 1
        if len(chosen[group]) < EXAMPLES_PER_GROUP:
            chosen[group].append(item)
        elif (j := rng.integers(seen[group])) < EXAMPLES_PER_GROUP:
            chosen[group][j] = item
    return [item for g in EXAMPLE_GROUPS for item in chosen[g]]


def write_examples(path: str | Path, candidates: list, batch: int, L: int, fs: float) -> None:
    picked = _sample_examples(candidates, batch)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["fs"] = fs
        f["signals"] = np.stack([w for _, (_, w, _, _) in picked]) if picked else np.empty((0, 2, L), np.float32)
        f["group"] = np.array([g for _, (g, _, _, _) in picked], dtype=h5py.string_dtype())
        f["failed"] = np.array([x for _, (_, _, x, _) in picked], dtype=h5py.string_dtype())
        f["caseid"] = np.array([int(c) for c, _ in picked], dtype=np.int64)
        f["start_s"] = np.array([t for _, (_, _, _, t) in picked], dtype=np.float64)


def read_examples(paths: list) -> tuple[list[dict], float | None]:
    """Every example of the batch files [{group, signals [2, L], failed, caseid, start_s}], and their fs."""
    out, fs = [], None
    for p in paths:
        with h5py.File(p, "r") as f:
            fs = float(f.attrs["fs"])
            sig, group, failed = f["signals"][:], f["group"].asstr()[:], f["failed"].asstr()[:]
            caseid, start = f["caseid"][:], f["start_s"][:]
            out += [{"group": group[i], "signals": sig[i], "failed": failed[i], "caseid": int(caseid[i]), "start_s": float(start[i])}
                    for i in range(len(sig))]
    return out, fs


def _create_shard(f: h5py.File, L: int, chunk: int, attrs: dict) -> None:
    f.create_dataset("signals", shape=(0, 2, L), maxshape=(None, 2, L), dtype="float32", chunks=(chunk, 2, L))
    for name, dt in (("caseid", "int32"), ("subjectid", "int64"), ("start_s", "float64"), ("hr_bpm", "float32")):
        f.create_dataset(name, shape=(0,), maxshape=(None,), dtype=dt, chunks=(max(chunk, 1024),))
    for k, v in attrs.items():
        f.attrs[k] = v


def _append(f: h5py.File, data: dict) -> None:
    n0 = f["signals"].shape[0]
    k = len(data["signals"])
    for name, arr in data.items():
        f[name].resize(n0 + k, axis=0)
        f[name][n0 : n0 + k] = arr


def shard_attrs(params: dict, split: str, batch: int) -> dict:
    sig = params["signals"]
    return {
        "fs": sig["target_fs"], "window": params["window"]["length"], "stride": params["window"]["stride"],
        "channels": list(CHANNELS), "tracks": list(params["tracks"]),
        "pipeline_version": __version__, "config_digest": digest(params), "split": split, "batch": batch,
    }


def windows_batch(rows: list[dict], resample_status: dict, params: dict, shard_paths: dict, stats_path: str | Path, batch: int,
                  examples_path: str | Path | None = None) -> dict:
    """Window every resampled case of `rows`; append kept windows to the shard of the case's split; with
    `examples_path`, write the QC gallery's examples of the batch there."""
    L = params["window"]["length"]
    fs = params["signals"]["target_fs"]
    chunk = params["window"]["chunk"]
    stats, candidates = {}, []
    with ExitStack() as stack:
        files = {}
        for split in SPLITS:
            tmp = stack.enter_context(atomic_path(shard_paths[split]))
            files[split] = stack.enter_context(h5py.File(tmp, "w"))
            _create_shard(files[split], L, chunk, shard_attrs(params, split, batch))
        for row in progress(rows, desc="windows", unit="case", mininterval=2):
            caseid = str(row["caseid"])
            st = resample_status.get(caseid, {"status": "failed", "stage": "resample", "reason": "no resample status"})
            entry = {"subjectid": row["subjectid"], "split": row["split"]}
            if st["status"] != "ok":
                stats[caseid] = {**entry, "cut": 0, "kept": 0, "skip_reason": f"{st['stage']}: {st['reason']}",
                                 **{k: st[k] for k in ("unexpected", "gave_up") if k in st},
                                 **({"excluded": True} if st["status"] == "excluded" else {})}
                continue
            try:
                signals, saturated, _ = read_resampled(st["path"])
            except (OSError, KeyError) as e:  # a corrupt per-case file is that case's failure, not the batch's
                log.warning("case %s skipped at windows: unreadable resampled file %s (%s)", caseid, st["path"], e)
                stats[caseid] = {**entry, "cut": 0, "kept": 0, "skip_reason": f"windows: unreadable resampled file ({e})"}
                continue
            case_examples = []
            try:
                win, starts, hr, s = window_case(signals, saturated, fs, params["window"], params["quality"], case_examples)
            except Exception as e:  # noqa: BLE001 -- errors.classify: one case's fault never stops the batch
                fault = classify(e)
                if fault.transient:
                    raise
                log.error("case %s skipped at windows: %s", caseid, fault.reason)
                stats[caseid] = {**entry, "cut": 0, "kept": 0, "skip_reason": f"windows: {fault.reason}",
                                 **({"unexpected": fault.unexpected} if fault.unexpected else {})}
                continue
            entry.update(s)
            candidates += [(caseid, e) for e in case_examples]
            if s["cut"] == 0:
                entry["skip_reason"] = f"shorter than one window ({signals.shape[1]} < {L} samples)"
            elif s["kept"] == 0:
                entry["skip_reason"] = "every window rejected by the quality rules"
            else:
                _append(files[row["split"]], {
                    "signals": win, "caseid": np.full(len(win), int(caseid), np.int32),
                    "subjectid": np.full(len(win), int(float(row["subjectid"])), np.int64),
                    "start_s": starts, "hr_bpm": hr,
                })
            stats[caseid] = entry
    if examples_path is not None:
        write_examples(examples_path, candidates, batch, L, fs)
    write_json(stats_path, stats)
    return stats


def build_manifest(batch_stats_paths: list[str | Path], out_path: str | Path, params: dict) -> dict:
    """Merge per-batch window statistics into `manifest.json` with totals."""
    cases = {}
    for p in batch_stats_paths:
        cases.update(read_json(p))
    totals = {"cases": len(cases), "cases_used": sum(1 for c in cases.values() if c.get("kept", 0) > 0),
              "cut": sum(c.get("cut", 0) for c in cases.values()), "kept": sum(c.get("kept", 0) for c in cases.values()),
              "rejected": {r: sum(c.get("rejected", {}).get(r, 0) for c in cases.values()) for r in RULES},
              "kept_per_split": {s: sum(c.get("kept", 0) for c in cases.values() if c["split"] == s) for s in SPLITS},
              "skipped": sum(1 for c in cases.values() if "skip_reason" in c),
              "excluded": sum(1 for c in cases.values() if c.get("excluded")),
              "gave_up": sum(1 for c in cases.values() if c.get("gave_up")),
              "unexpected_errors": dict(sorted(Counter(c["unexpected"] for c in cases.values() if "unexpected" in c).items()))}
    if totals["unexpected_errors"]:  # a fault no rule foresaw, or a bug of ours: each case's reason is in the manifest
        log.error("manifest: %d case(s) skipped for an unexpected error (%s): see their skip_reason in %s",
                  sum(totals["unexpected_errors"].values()), ", ".join(f"{k} x{v}" for k, v in totals["unexpected_errors"].items()),
                  out_path)
    manifest = {"pipeline_version": __version__, "config_digest": digest(params), "totals": totals,
                "cases": dict(sorted(cases.items(), key=lambda kv: int(kv[0])))}
    write_json(out_path, manifest)
    return manifest
