import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TSFM_PYTHON_LOGGING_LEVEL", "WARNING")

from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.evaluation.checks import ALL_CHECKS

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def config():
    """The default config, validated (defaults filled)."""
    return load_config(REPO / "config" / "config.yaml", ALL_CHECKS)
