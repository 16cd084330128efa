"""Acoustic models. Every model maps ``(feats (B, T, F), lengths (B,))`` to
``(logits (B, T', V), out_lengths (B,))`` with ``T' = ceil(T / subsampling)``; teacher and student
share that frame-rate rule so their frames align one to one (checked in asr_kd.distill).

Students: :class:`EmformerCTC` (torchaudio's Emformer) and :class:`ChunkConformerCTC` (a
chunk-masked Conformer with key/value and convolution caches). Both stream through the same API
(``streaming``, ``chunk_frames``, ``stream_window``, ``stream_chunk``) that
:class:`asr_kd.decoding.streaming.StreamingRecognizer` drives.
"""

from asr_kd.models.conformer_stream import ChunkConformerCTC
from asr_kd.models.student import EmformerCTC
from asr_kd.models.teacher import ConformerCTC

__all__ = ["ChunkConformerCTC", "ConformerCTC", "EmformerCTC"]
