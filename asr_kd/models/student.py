"""The student: a streaming Emformer-CTC on ``torchaudio.models.Emformer``.

Frame stacking (x4, causal) -> causal depthwise convolution -> Emformer (chunks of ``chunk_frames``
encoder frames, each seeing ``left_context_frames`` of the past and ``right_context_frames`` of
look-ahead) -> CTC head.
:meth:`EmformerCTC.forward` on a whole utterance equals feeding it chunk by chunk through
:meth:`EmformerCTC.stream_chunk` (the tail zero-padded to a whole chunk in both), which is what
makes "streaming" a property of the model rather than of how files are cut.

Chunk size sets the latency: ``chunk_frames`` 4 / 8 / 16 encoder frames of 40 ms are 160 / 320 /
640 ms chunks. With ``dynamic_chunks`` (dynamic chunk training, as WeNet's U2) each training
forward draws its chunk size from that list, so one model serves all of those latencies: pass
``chunk_frames=`` to :meth:`forward` (or feed :meth:`stream_chunk` windows of that size) to pick
one at inference. The left context (in encoder frames) does not depend on the chunk size.

torchaudio's Emformer has no positional encoding, so within a chunk its attention sees a bag of
frames. A residual causal depthwise convolution over the stacked frames (``conv_kernel`` frames,
past only) gives each frame its recent history and hence its order; on 2 CPU cores it roughly
halves the steps the student needs to reach a given WER. It streams with a ``conv_kernel - 1``
frame cache, so it adds no look-ahead. ``conv_kernel`` defaults to 0 (no convolution) so bundles
saved before it existed still load; ``conf/student/emformer_small.yaml`` turns it on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn
from torchaudio.models import Emformer

from asr_kd.models.chunked import ChunkedStudent, StreamingStep
from asr_kd.models.subsampling import StackSubsampling

__all__ = ["EmformerCTC", "EmformerStep"]


class EmformerCTC(ChunkedStudent):
    """Streaming student. Latency: chunk + right context (in encoder frames of 40 ms).

    Args:
        vocab_size: output tokens (blank = 0), a run-time fact.
        input_dim: feature bins.
        d_model, num_heads, ffn_dim, num_layers, dropout: Emformer size.
        chunk_frames: default chunk (segment) length in encoder frames (8 = 320 ms).
        left_context_frames: encoder frames of the past each chunk attends to.
        right_context_frames: encoder frames of look-ahead per chunk.
        conv_kernel: frames of the causal depthwise convolution before the Emformer (0: none).
        dynamic_chunks: chunk sizes to draw from, uniformly, at each training forward
            (``None``: always ``chunk_frames``). Evaluation always uses ``chunk_frames``
            unless a forward is given another.
    """

    streaming = True

    def __init__(
        self,
        vocab_size: int,
        input_dim: int = 80,
        d_model: int = 96,
        num_heads: int = 4,
        ffn_dim: int = 384,
        num_layers: int = 6,
        chunk_frames: int = 8,
        left_context_frames: int = 32,
        right_context_frames: int = 1,
        dropout: float = 0.1,
        conv_kernel: int = 0,
        dynamic_chunks: Sequence[int] | None = None,
    ):
        super().__init__()
        if dynamic_chunks is not None and (not dynamic_chunks or min(dynamic_chunks) < 1):
            raise ValueError(f"dynamic_chunks must list positive chunk sizes, got {dynamic_chunks!r}")
        self.chunk_frames = chunk_frames
        self.left_context_frames = left_context_frames
        self.right_context_frames = right_context_frames
        self.dynamic_chunks = tuple(dynamic_chunks) if dynamic_chunks else None
        self.subsampling = StackSubsampling(input_dim, d_model)
        self.conv_kernel = conv_kernel
        self.conv = nn.Conv1d(d_model, d_model, conv_kernel, groups=d_model) if conv_kernel > 0 else None
        self.encoder = Emformer(
            input_dim=d_model,
            num_heads=num_heads,
            ffn_dim=ffn_dim,
            num_layers=num_layers,
            segment_length=chunk_frames,
            left_context_length=left_context_frames,
            right_context_length=right_context_frames,
            dropout=dropout,
            max_memory_size=0,
        )
        self.head = nn.Linear(d_model, vocab_size)


    def forward(
        self, feats: torch.Tensor, lengths: torch.Tensor, chunk_frames: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Chunk-masked full-utterance pass: ``(B, T, F), (B,) -> (B, ceil(T/4), V), (B,)``.

        ``chunk_frames``: chunk size for this pass; by default ``self.chunk_frames``, or in training
        mode with ``dynamic_chunks`` one drawn from that list.
        """
        chunk = chunk_frames or self._training_chunk()
        b, t, f = feats.shape
        out_t = -(-t // self.subsampling_factor)
        # Zero-pad the *features* to whole chunks plus look-ahead, exactly as a stream is flushed.
        padded_t = -(-out_t // chunk) * chunk + self.right_context_frames
        feats = torch.cat([feats, feats.new_zeros(b, padded_t * self.subsampling_factor - t, f)], dim=1)
        x, out_lengths = self.subsampling(feats, lengths)
        x = self._causal_conv(x, x.new_zeros(b, max(self.conv_kernel - 1, 0), x.shape[-1]))
        chunk_lengths = -(-out_lengths // chunk) * chunk
        with self._chunking(chunk):
            y, _ = self.encoder(x, chunk_lengths)
        return self.head(y[:, :out_t]), out_lengths

    def _causal_conv(self, x: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        """``x + conv(x)`` over time, each frame seeing ``history`` (the frames before ``x``) and ``x``."""
        if self.conv is None:
            return x
        return x + self.conv(torch.cat([history, x], dim=1).transpose(1, 2)).transpose(1, 2)

    def stream_chunk(self, feats: torch.Tensor, state: tuple | None) -> tuple[torch.Tensor, tuple]:
        """One streaming step on ``(1, (chunk + right_context) * 4, F)`` features.

        The chunk size is read from the input's length (so a model trained with dynamic chunks
        streams at any of them). The last ``right_context_frames * 4`` frames are look-ahead only;
        the next call must start right after the chunk proper (i.e. overlap by the look-ahead).
        Returns ``(1, chunk, V)`` logits and the new state (``None`` starts an utterance): the
        convolution's last ``conv_kernel - 1`` chunk frames and the Emformer's layer states.
        """
        chunk = feats.shape[1] // self.subsampling_factor - self.right_context_frames
        if chunk < 1 or feats.shape[1] != self.stream_window(chunk):
            raise ValueError(f"stream_chunk needs (1, (chunk + {self.right_context_frames}) * "
                             f"{self.subsampling_factor}, F) features, got {tuple(feats.shape)}")
        with torch.inference_mode(), self._chunking(chunk):
            x, _ = self.subsampling(feats, torch.tensor([feats.shape[1]]))
            if state is None:
                state = (x.new_zeros(1, max(self.conv_kernel - 1, 0), x.shape[-1]), None)
            history, layers = state
            y, _, layers = self.encoder.infer(self._causal_conv(x, history), torch.tensor([x.shape[1]]),
                                              layers)
            # the next window starts right after this chunk proper: keep the frames just before it
            history = torch.cat([history, x[:, :chunk]], dim=1)[:, chunk:]
            return self.head(y), (history, layers)

    def streaming_step(self, chunk_frames: int | None = None) -> EmformerStep:
        """This model's streaming step as a pure function of tensors (for ONNX export)."""
        return EmformerStep(self, chunk_frames)

    @contextlib.contextmanager
    def _chunking(self, chunk: int) -> Iterator[None]:
        """Run the Emformer with segment length ``chunk`` (it reads it on every call; no memory bank,
        so nothing else depends on it)."""
        previous = self.encoder.segment_length
        self.encoder.segment_length = chunk
        try:
            yield
        finally:
            self.encoder.segment_length = previous


class EmformerStep(StreamingStep):
    """An :class:`EmformerCTC` as pure functions of tensors, so that ONNX can hold it (batch of 1).

    ``forward(feats, *states) -> (logits, *new_states)`` is one streaming step: ``(1, (chunk +
    right_context) * 4, F)`` features and the states named in ``state_names`` (shapes
    ``state_shapes``; zeros from :meth:`initial_states` start an utterance) give ``(1, chunk, V)``
    logits, as :meth:`EmformerCTC.stream_chunk` does. torchaudio's ``Emformer.infer`` reads the
    frames seen so far with ``.item()`` and slices its left-context cache by it, which a graph
    cannot hold; here the cache has a fixed size and its not yet filled rows are masked instead.
    States: ``conv_cache`` ``(conv_kernel - 1, D)``, ``cached_key`` / ``cached_val``
    ``(layers, left_context, D)`` and ``processed_frames`` ``(1,)`` int64 (frames in the cache);
    a state of size 0 (no convolution, no left context) is left out.

    :meth:`full` is the chunk-masked full-utterance pass ``(1, T, F) -> (1, ceil(T/4), V)`` with
    its attention mask built from tensor ops, so one graph serves every ``T``.
    """

    def __init__(self, model: EmformerCTC, chunk_frames: int | None = None):
        super().__init__()
        self.model = model
        self.chunk_frames = chunk_frames or model.chunk_frames
        self.right_context_frames = model.right_context_frames
        self.left_context_frames = model.left_context_frames
        self.subsampling_factor = model.subsampling_factor
        self.window = model.stream_window(self.chunk_frames)
        layers = model.encoder.emformer_layers
        d, left, history = layers[0].input_dim, self.left_context_frames, max(model.conv_kernel - 1, 0)
        shapes = {
            "conv_cache": (history, d),
            "cached_key": (len(layers), left, d),
            "cached_val": (len(layers), left, d),
            "processed_frames": (1,) if left else (0,),
        }
        self._declare_states(shapes)

    def forward(self, feats: torch.Tensor, *states: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """One chunk: ``(1, window, F)`` features and the states -> ``(1, chunk, V)`` logits, new states."""
        s = dict(zip(self.state_names, states, strict=True))
        model, chunk, right = self.model, self.chunk_frames, self.right_context_frames
        x = model.subsampling.proj(feats.reshape(1, -1, feats.shape[-1] * self.subsampling_factor))
        new: dict[str, torch.Tensor] = {}
        if "conv_cache" in s:
            history = s["conv_cache"].unsqueeze(0)
            new["conv_cache"] = torch.cat([history, x[:, :chunk]], dim=1)[0, chunk:]
            x = model._causal_conv(x, history)
        utterance, right_context = x[0, :chunk], x[0, chunk:]
        left = self.left_context_frames
        if left:
            # rows of the cache not yet filled (the first ``left - processed``) are masked out
            processed = s["processed_frames"]
            empty = torch.arange(left, device=x.device) < left - processed
            key_mask = torch.cat([empty.new_zeros(right), empty, empty.new_zeros(chunk)])
            new["processed_frames"] = torch.clamp(processed + chunk, max=left)
        keys, vals = [], []
        for i, layer in enumerate(model.encoder.emformer_layers):
            cache = (s["cached_key"][i], s["cached_val"][i]) if left else None
            utterance, right_context, k, v = self._layer_step(
                layer, utterance, right_context, cache, key_mask if left else None
            )
            keys.append(k[-left:] if left else k)
            vals.append(v[-left:] if left else v)
        if left:
            new["cached_key"], new["cached_val"] = torch.stack(keys), torch.stack(vals)
        return (model.head(utterance).unsqueeze(0), *(new[name] for name in self.state_names))

    def full(self, feats: torch.Tensor) -> torch.Tensor:
        """Chunk-masked full-utterance pass ``(1, T, F) -> (1, ceil(T/4), V)``, as
        :meth:`EmformerCTC.forward`, with torchaudio's per-chunk mask loop replaced by tensor ops."""
        model, chunk, right, factor = self.model, self.chunk_frames, self.right_context_frames, 4
        t = feats.shape[1]
        n = (t + factor * chunk - 1) // (factor * chunk)  # chunks
        feats = nn.functional.pad(feats, (0, 0, 0, (n * chunk + right) * factor - t))
        x = model.subsampling.proj(feats.reshape(1, -1, feats.shape[-1] * factor))
        x = model._causal_conv(x, x.new_zeros(1, max(model.conv_kernel - 1, 0), x.shape[-1]))[0]
        # Emformer rows: each chunk's right context (a copy of the frames after it), then the chunks.
        seg = torch.arange(n, device=x.device)
        rc_chunk = seg.unsqueeze(1).expand(n, right).reshape(-1)
        rc_index = (rc_chunk + 1) * chunk + torch.arange(right, device=x.device).repeat(n)
        position = torch.arange(n * chunk, device=x.device)
        query_chunk = torch.cat([rc_chunk, position // chunk]).unsqueeze(1)
        sees_rc = query_chunk == rc_chunk.unsqueeze(0)
        sees_frame = (position >= query_chunk * chunk - self.left_context_frames) & (
            position < (query_chunk + 1) * chunk)
        mask = ~torch.cat([sees_rc, sees_frame], dim=1)
        utterance, right_context = x[: n * chunk].unsqueeze(1), x[rc_index].unsqueeze(1)
        lengths, mems = torch.full((1,), n * chunk, device=x.device), x.new_zeros(0, 1, x.shape[-1])
        for layer in model.encoder.emformer_layers:
            utterance, right_context, mems = layer(utterance, lengths, right_context, mems, mask)
        return model.head(utterance[: (t + factor - 1) // factor, 0]).unsqueeze(0)

    @staticmethod
    def _layer_step(layer: nn.Module, utterance: torch.Tensor, right_context: torch.Tensor,
                    cache: tuple[torch.Tensor, torch.Tensor] | None, key_mask: torch.Tensor | None
                    ) -> tuple[torch.Tensor, ...]:
        """One torchaudio ``_EmformerLayer`` (inference, no memory bank) on ``(chunk, D)`` / ``(R, D)``
        frames with a fixed-size ``(left, D)`` key/value cache. Returns the new frames, right
        context, and the cache followed by this chunk's keys and values (the caller keeps the tail)."""
        att, r, d = layer.attention, right_context.shape[0], utterance.shape[-1]
        inputs = torch.cat([right_context, utterance])
        normed = layer.layer_norm_input(inputs)
        query = att.emb_to_query(normed)
        key, value = att.emb_to_key_value(normed).chunk(2, dim=-1)
        new_key, new_value = key[r:], value[r:]
        if cache is not None:  # keys ordered [right context, cache, chunk], as torchaudio's
            new_key, new_value = torch.cat([cache[0], new_key]), torch.cat([cache[1], new_value])
            key, value = torch.cat([key[:r], new_key]), torch.cat([value[:r], new_value])
        heads = att.num_heads
        q, k, v = (x.reshape(-1, heads, d // heads).transpose(0, 1) for x in (query, key, value))
        weights = torch.matmul(q * att.scaling, k.transpose(1, 2))
        if key_mask is not None:
            weights = weights.masked_fill(key_mask, att.negative_inf)
        attention = torch.matmul(torch.softmax(weights, dim=-1), v).transpose(0, 1).reshape(-1, d)
        out = att.out_proj(attention) + inputs
        out = layer.layer_norm_output(layer.pos_ff(out) + out)
        return out[r:], out[:r], new_key, new_value
