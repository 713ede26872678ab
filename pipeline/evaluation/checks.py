"""The evaluation stage's cross-key rules of the configuration, and the whole configuration's
rules: the evaluation stage may import both stages below it, so every stage's checks are
collected here, without an upward import (docs/design.md, "File layout").

`STAGE_CHECKS` is every rule of one run's config (data, model, evaluation); `ALL_CHECKS` adds the
ablations rule, which validates each variant's merged config with `STAGE_CHECKS`. The workflow
and the tests validate a whole config with `ALL_CHECKS`; a step command checks its own sections
with its stage's list.
"""

from __future__ import annotations

from pipeline.config import Checks
from pipeline.data import checks as data_checks
from pipeline.errors import ConfigError
from pipeline.evaluation.ablations import check_ablations
from pipeline.evaluation.features import highest_frequency_hz
from pipeline.model import checks as model_checks


def check_rates(config: dict) -> None:
    """The evaluation's filters and features (R-peak band-pass, spectral bands) lie below Nyquist."""
    fs, top = config["signals"]["target_fs"], highest_frequency_hz()
    if fs / 2 <= top:
        raise ConfigError(f"signals.target_fs ({fs} Hz) must be above {2 * top:g} Hz: the evaluation filters and "
                          f"features reach {top:g} Hz, which must stay below Nyquist")


CHECKS: Checks = ((("signals",), check_rates),)
STAGE_CHECKS: Checks = (*data_checks.CHECKS, *model_checks.CHECKS, *CHECKS)
ALL_CHECKS: Checks = (
    *STAGE_CHECKS,
    # last: it runs all of the above per variant
    (("ablations", "source", "model", "train", "window"), lambda config: check_ablations(config, STAGE_CHECKS)),
)
