"""The evaluation stage: what the exported encoder is worth on what VitalDB is used for.

It owns the tasks (`tasks`), the physiologist's raw features (`features`), linear probes and their
subject-bootstrap intervals (`probes`), fine-tuning and the supervised baseline (`finetune`), the
evaluation driver (`evaluate`), its report (`report`), the ablation runs' configs and summary
(`ablations`) and the cross-key config rules of the whole configuration (`checks`). It sits on top:
it may import the data and model stages and the shared modules; nothing below imports it
(tests/test_boundaries.py).
"""
