"""Acoustic models. Every model maps ``(feats (B, T, F), lengths (B,))`` to
``(logits (B, T', V), out_lengths (B,))`` with ``T' = ceil(T / subsampling)``; teacher and student
share that frame-rate rule so their frames align one to one (checked in asr_kd.distill).
"""

from asr_kd.models.student import EmformerCTC
from asr_kd.models.teacher import ConformerCTC

__all__ = ["ConformerCTC", "EmformerCTC"]
