import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TSFM_PYTHON_LOGGING_LEVEL", "WARNING")

from pathlib import Path

import pytest
import yaml

from pipeline.config import validate_config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def config():
    """The default config, validated (defaults filled)."""
    return validate_config(yaml.safe_load((REPO / "config" / "config.yaml").read_text()))
