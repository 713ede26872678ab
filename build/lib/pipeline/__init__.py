"""vitalssl: VitalDB PPG/ECG windows and self-supervised TinyTimeMixer pretraining."""

__version__ = "0.1.0"
