"""A PhysioNet VitalDB release on disk: `vital_files/NNNN.vital`, `clinical_data.csv`,
`track_names.csv` under `local.root`. Fetching a case symlinks its file (no copy)."""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.data.sources._vital import VitalFileSource, rows_from_vitaldb_csv
from pipeline.errors import CaseError


class LocalSource(VitalFileSource):
    name = "local"

    def case_rows(self) -> list[dict]:
        root = Path(self.section["root"])
        for name in ("clinical_data.csv", "track_names.csv"):
            if not (root / name).is_file():
                raise FileNotFoundError(f"local.root={root}: missing {name} (expected a PhysioNet VitalDB release)")
        return rows_from_vitaldb_csv((root / "clinical_data.csv").read_text(), (root / "track_names.csv").read_text(), *self.tracks())

    def fetch(self, row: dict, dest: Path, session) -> None:
        src = Path(self.section["root"]) / "vital_files" / f"{int(row['caseid']):04d}.vital"
        if not src.is_file():
            raise CaseError(f"missing file {src}")
        dest.unlink()
        os.symlink(src.resolve(), dest)


SOURCE = LocalSource
