"""vitalssl: VitalDB (and WFDB) PPG/ECG windows and self-supervised pretraining of granite-tsfm encoders."""

__version__ = "0.1.0"
