"""The data stage: from a source's recordings to quality-checked windows and their labels.

It owns the sources (`sources/`, one module each behind `Source`), the case table (`cases`),
downloads over HTTP (`download`, `http`), anti-aliased resampling (`resample`, with the streamed
polyphase filter in `polyphase`), windows cut into HDF5 shards (`windows`) under the quality rules
(`quality`, with the heartbeats it and the evaluation's raw features share in `beats`), blood-pressure and hypotension labels from the numerics (`labels`), the data QC report
(`qc_report`) and the cross-key config rules of these sections (`checks`). It may import the shared
modules at the top of `pipeline` (config, io, errors, channels, plots) and never the model or
evaluation stages, nor torch: a data job never pays for loading a model (tests/test_boundaries.py).
"""
