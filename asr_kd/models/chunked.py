"""What the streaming students share: a subsampling front end, a chunk size (fixed, or drawn per
training batch from ``dynamic_chunks``, as WeNet's U2) and the feature frames one streaming step
consumes. asr_kd.decoding.streaming drives any model built on it."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ChunkedStudent", "StreamingStep"]


class ChunkedStudent(nn.Module):
    """Base of the streaming students; subclasses set ``subsampling``, ``chunk_frames`` (None: a
    full-context model), ``right_context_frames`` and ``dynamic_chunks``."""

    subsampling: nn.Module
    streaming: bool
    chunk_frames: int | None
    right_context_frames: int
    dynamic_chunks: tuple[int, ...] | None

    @property
    def subsampling_factor(self) -> int:
        return self.subsampling.factor

    @property
    def chunk_input_frames(self) -> int:
        """Feature frames one streaming step consumes at the default chunk size."""
        return self.stream_window(self.chunk_frames)

    def stream_window(self, chunk_frames: int) -> int:
        """Feature frames one streaming step consumes: chunk + right context, before subsampling."""
        if not self.streaming or chunk_frames is None:
            raise ValueError(f"a full-context {type(self).__name__} (chunk_frames null) does not stream")
        return (chunk_frames + self.right_context_frames) * self.subsampling_factor

    def _training_chunk(self) -> int | None:
        """The chunk of this pass: one of ``dynamic_chunks`` while training, else ``chunk_frames``."""
        if self.training and self.dynamic_chunks:
            return self.dynamic_chunks[int(torch.randint(len(self.dynamic_chunks), ()))]
        return self.chunk_frames


class StreamingStep(nn.Module):
    """Base of a student's streaming step as pure functions of tensors (for ONNX export): subclasses
    call :meth:`_declare_states` with every state's shape (those of size 0 are left out) and define
    ``forward(feats, *states) -> (logits, *new_states)``."""

    state_shapes: dict[str, tuple[int, ...]]
    state_names: tuple[str, ...]

    def _declare_states(self, shapes: dict[str, tuple[int, ...]]) -> None:
        self.state_shapes = {name: shape for name, shape in shapes.items() if 0 not in shape}
        self.state_names = tuple(self.state_shapes)

    def initial_states(self) -> list[torch.Tensor]:
        """Zero states that start an utterance (``processed_frames`` is int64, the rest float32)."""
        return [torch.zeros(shape, dtype=torch.int64 if name == "processed_frames" else torch.float32)
                for name, shape in self.state_shapes.items()]
