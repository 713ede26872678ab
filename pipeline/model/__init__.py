"""The model stage: from window shards to a pretrained, exported encoder.

It owns the backbones (`backbones/`, one module per granite-tsfm family; the only place that
imports a granite-tsfm model class), the encoder and channel mixer (`encoder`), per-window
normalisation (`preprocess`), masking (`masking`), losses (`losses`), the shard loader
(`dataset`), training (`train`), checkpoints (`checkpoint`), embeddings (`embedding`), the export
(`export`), how a torch job shares its cores (`cores`) and the cross-key config rules of the model
and train sections (`checks`). It may import the shared modules at the top of `pipeline` and never
the data or evaluation stages: it reads shards through their documented layout, not through the
code that wrote them (tests/test_boundaries.py).
"""
