"""The channel contract, in one place (docs/design.md, "Shards"): channel 0 is PPG, channel 1 is ECG."""

CHANNELS = ("PPG", "ECG")
NUM_CHANNELS = len(CHANNELS)
