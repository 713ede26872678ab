"""The VitalDB open API: case table from `{api_url}/cases` and `{api_url}/trks`, case files from
`{api_url}/{dataset_version}/{caseid}.vital` over HTTP (pipeline.data.download: timeout, retries)."""

from __future__ import annotations

from pathlib import Path

from pipeline.data.http import fetch_file, fetch_text, http_pool
from pipeline.data.sources._vital import VitalFileSource, rows_from_vitaldb_csv


class VitalDBSource(VitalFileSource):
    name = "vitaldb"

    def _api(self) -> str:
        return self.section["api_url"].rstrip("/")

    def case_rows(self) -> list[dict]:
        clinical = fetch_text(f"{self._api()}/cases", self.download)
        tracks = fetch_text(f"{self._api()}/trks", self.download)
        return rows_from_vitaldb_csv(clinical, tracks, *self.tracks())

    def session(self):
        return http_pool(self.download)

    def fetch(self, row: dict, dest: Path, session) -> None:
        fetch_file(session, f"{self._api()}/{self.section['dataset_version']}/{int(row['caseid'])}.vital", dest, self.download)


SOURCE = VitalDBSource
