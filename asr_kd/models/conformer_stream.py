"""A streaming student: a chunk-masked Conformer-CTC with key/value and convolution caches.

Frame stacking (x4, causal) -> Conformer blocks -> CTC head. Each block is the usual macaron
Conformer (half FFN, self-attention, convolution module, half FFN, LayerNorm) made streamable as
in WeNet's U2 and NeMo's cache-aware Conformer:

* **Chunk-masked self-attention.** Encoder frames are cut into chunks of ``chunk_frames``; a frame
  sees every frame of its own chunk and of the ``left_chunks`` chunks before it (``-1``: all of the
  past), never the future beyond its chunk (WeNet's ``decoding_chunk_size`` /
  ``num_decoding_left_chunks``). Attention is ``scaled_dot_product_attention`` with that mask.
* **Causal depthwise convolutions** (``conv_kernel`` frames, past only) in every block, followed
  by LayerNorm instead of BatchNorm: no statistic pools frames, so nothing reads padding.
* **Rotary positions** (RoPE) on queries and keys: attention scores depend only on the distance
  between frames, and the absolute frame index that rotates them is known in a stream, so the
  cached (already rotated) keys are reused as they are. Streaming then equals the full pass exactly.

:meth:`ChunkConformerCTC.forward` on a whole utterance zero-pads its features to whole chunks (as
a stream is flushed) and masks attention by chunk; :meth:`ChunkConformerCTC.stream_chunk` runs one
chunk at a time, carrying per layer the last ``left_chunks * chunk`` keys and values and the
convolution's last ``conv_kernel - 1`` inputs, plus the frame count: constant memory per step, no
recomputation of the past. Both give the same logits (to float rounding).

Latency is the chunk alone (no look-ahead): ``chunk_frames`` 4 / 8 / 16 encoder frames of 40 ms
are 160 / 320 / 640 ms. With ``dynamic_chunks`` each training forward draws its chunk size from that
list, so one model streams at each of them (``chunk_frames=`` of :meth:`forward`, or windows of
that size fed to :meth:`stream_chunk`). The left context is ``left_chunks`` chunks of the chunk size
in use. ``chunk_frames=None`` builds the full-context twin (same blocks, attention over the whole
utterance, ``streaming = False``); its convolutions stay causal, so it differs from the streaming
model only in what attention sees and measures the cost of chunking itself.

torchaudio's Conformer layers do not fit: their convolution is symmetric with BatchNorm, and their
attention (``nn.MultiheadAttention``) has no positions and no key/value cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from asr_kd.models.chunked import ChunkedStudent
from asr_kd.models.subsampling import StackSubsampling

__all__ = ["ChunkConformerCTC", "ConformerStep", "StreamState", "chunk_attention_mask", "rotary_angles"]


class StreamState(NamedTuple):
    """What :meth:`ChunkConformerCTC.stream_chunk` carries between chunks (L layers, H heads).

    ``frames``: encoder frames consumed so far (the rotary position of the next one);
    ``keys`` / ``values``: ``(L, 1, H, S, D/H)``, the last ``S <= left_chunks * chunk`` frames;
    ``conv``: ``(L, 1, conv_kernel - 1, D)``, each convolution's last inputs.
    """

    frames: int
    keys: torch.Tensor
    values: torch.Tensor
    conv: torch.Tensor


def chunk_attention_mask(
    key_lengths: torch.Tensor, frames: int, chunk_frames: int | None, left_chunks: int
) -> torch.Tensor:
    """``(B, 1, T, T)`` boolean mask, True where query frame i may attend to key frame j.

    j must be valid (``j < key_lengths``) and, with chunking, in i's chunk or one of the
    ``left_chunks`` before it (``-1``: any earlier chunk). Each frame always sees itself, so the
    rows of padded frames are never empty, whatever an attention kernel makes of an empty row (some
    give NaN, whose gradient leaks into valid frames; torch 2.11's CPU kernels give zeros).
    """
    pos = torch.arange(frames, device=key_lengths.device)
    allowed = pos[None, None, :] < key_lengths[:, None, None]  # (B, 1, T)
    if chunk_frames is not None:
        chunk = pos // chunk_frames
        seen = chunk[None, :] <= chunk[:, None]  # (T, T): no future chunk
        if left_chunks >= 0:
            seen &= chunk[None, :] >= chunk[:, None] - left_chunks
        allowed = allowed & seen[None]
    allowed = allowed | torch.eye(frames, dtype=torch.bool, device=key_lengths.device)[None]
    return allowed[:, None]


def rotary_angles(
    first: int | torch.Tensor, frames: int, head_dim: int, device=None, dtype: torch.dtype = torch.float64
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(cos, sin)``, each ``(frames, head_dim / 2)``, of the rotary angles of positions ``first,
    first + 1, ...`` (RoPE). Computed in float64, so positions far into a long stream rotate as
    precisely as the first ones; computed once per forward or chunk and shared by every layer.
    ``first`` may be a ``(1,)`` tensor (the frame count a graph carries as a state); ``dtype``
    float32 for an exported graph."""
    half = head_dim // 2
    inv_freq = (10000.0 ** (-torch.arange(half, dtype=torch.float64, device=device) / half)).to(dtype)
    if isinstance(first, torch.Tensor):
        first = first.to(dtype)
    angles = (first + torch.arange(frames, dtype=dtype, device=device))[:, None] * inv_freq
    return angles.cos().float(), angles.sin().float()


def _rotate(x: torch.Tensor, rotation: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Rotate ``(B, H, T, Dh)`` queries or keys by :func:`rotary_angles`' ``(cos, sin)``."""
    cos, sin = (r.to(x.dtype) for r in rotation)
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class _FeedForward(nn.Sequential):
    def __init__(self, d_model: int, ffn_dim: int, dropout: float):
        super().__init__(nn.LayerNorm(d_model), nn.Linear(d_model, ffn_dim), nn.SiLU(), nn.Dropout(dropout),
                         nn.Linear(ffn_dim, d_model), nn.Dropout(dropout))


class _SelfAttention(nn.Module):
    """Multi-head self-attention with rotary positions over ``cache + x`` keys."""

    def __init__(self, d_model: int, num_heads: int, dropout: float):
        super().__init__()
        if d_model % num_heads or (d_model // num_heads) % 2:
            raise ValueError(f"d_model ({d_model}) must split into num_heads ({num_heads}) heads of even "
                             "size (rotary positions rotate pairs of dimensions)")
        self.num_heads, self.dropout = num_heads, dropout
        self.norm = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(
        self, x: torch.Tensor, rotation: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor | None,
        cache: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x (B, T, D)``, ``rotation``: its positions' angles. Returns the output and the keys and values
        ``(B, H, S + T, Dh)`` it attended over (``cache``'s S frames, then x's)."""
        b, t, d = x.shape
        qkv = self.qkv(self.norm(x)).view(b, t, 3, self.num_heads, d // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, H, T, Dh)
        q, k = _rotate(q, rotation), _rotate(k, rotation)
        if cache is not None:
            k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
        dropout = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        return self.out(y.transpose(1, 2).reshape(b, t, d)), k, v


class _CausalConvModule(nn.Module):
    """Pointwise + GLU -> causal depthwise conv -> LayerNorm -> SiLU -> pointwise."""

    def __init__(self, d_model: int, kernel: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.pointwise_in = nn.Linear(d_model, 2 * d_model)
        self.depthwise = nn.Conv1d(d_model, d_model, kernel, groups=d_model)
        self.conv_norm = nn.LayerNorm(d_model)
        self.pointwise_out = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, history: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x (B, T, D)``; ``history (B, K-1, D)``: the depthwise conv's inputs just before x.
        Returns the output and the new history (its inputs' last K-1 frames)."""
        h = torch.cat([history, F.glu(self.pointwise_in(self.norm(x)), dim=-1)], dim=1)
        y = self.depthwise(h.transpose(1, 2)).transpose(1, 2)
        y = self.pointwise_out(F.silu(self.conv_norm(y)))
        return self.dropout(y), h[:, h.shape[1] - history.shape[1] :]


class _ConformerBlock(nn.Module):
    def __init__(self, d_model: int, num_heads: int, ffn_dim: int, conv_kernel: int, dropout: float):
        super().__init__()
        self.ff1 = _FeedForward(d_model, ffn_dim, dropout)
        self.attn = _SelfAttention(d_model, num_heads, dropout)
        self.attn_dropout = nn.Dropout(dropout)
        self.conv = _CausalConvModule(d_model, conv_kernel, dropout)
        self.ff2 = _FeedForward(d_model, ffn_dim, dropout)
        self.norm = nn.LayerNorm(d_model)

    def forward(
        self, x: torch.Tensor, rotation: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor | None,
        history: torch.Tensor,
        cache: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns ``x``, the attention's keys and values, and the convolution's new history."""
        x = x + 0.5 * self.ff1(x)
        a, k, v = self.attn(x, rotation, mask, cache)
        x = x + self.attn_dropout(a)
        c, history = self.conv(x, history)
        x = x + c
        return self.norm(x + 0.5 * self.ff2(x)), k, v, history


class ChunkConformerCTC(ChunkedStudent):
    """Chunk-masked streaming Conformer-CTC (see the module docstring). Latency: one chunk.

    Args:
        vocab_size: output tokens (blank = 0), a run-time fact.
        input_dim: feature bins.
        d_model, num_heads, ffn_dim, num_layers, dropout: Conformer size.
        conv_kernel: frames of each block's causal depthwise convolution (past and current).
        chunk_frames: default chunk in encoder frames of 40 ms (8 = 320 ms); ``None``: full context,
            an offline model.
        left_chunks: past chunks each chunk attends to (``-1``: all, whose cache then grows with
            the stream).
        dynamic_chunks: chunk sizes drawn uniformly at each training forward (``None``: always
            ``chunk_frames``).
    """

    right_context_frames = 0  # no look-ahead: a chunk is decoded as soon as it is complete
    export_contract = "wenet_ctc"  # asr_kd.export writes it for sherpa-onnx (see ConformerStep)

    def __init__(
        self,
        vocab_size: int,
        input_dim: int = 80,
        d_model: int = 96,
        num_heads: int = 4,
        ffn_dim: int = 288,
        num_layers: int = 4,
        conv_kernel: int = 15,
        chunk_frames: int | None = 8,
        left_chunks: int = 4,
        dynamic_chunks: Sequence[int] | None = None,
        dropout: float = 0.1,
    ):
        super().__init__()
        if chunk_frames is not None and chunk_frames < 1:
            raise ValueError(f"chunk_frames must be positive (or null: full context), got {chunk_frames}")
        if dynamic_chunks is not None and (not dynamic_chunks or min(dynamic_chunks) < 1 or not chunk_frames):
            raise ValueError(f"dynamic_chunks must list positive chunk sizes of a chunked model "
                             f"(chunk_frames {chunk_frames}), got {dynamic_chunks!r}")
        if left_chunks < -1 or conv_kernel < 1:
            raise ValueError(f"left_chunks must be >= -1 and conv_kernel >= 1, got {left_chunks}, "
                             f"{conv_kernel}")
        self.chunk_frames = chunk_frames
        self.left_chunks = left_chunks
        self.dynamic_chunks = tuple(dynamic_chunks) if dynamic_chunks else None
        self.streaming = chunk_frames is not None
        self.num_heads, self.conv_kernel = num_heads, conv_kernel
        self.subsampling = StackSubsampling(input_dim, d_model)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            _ConformerBlock(d_model, num_heads, ffn_dim, conv_kernel, dropout) for _ in range(num_layers)
        )
        self.head = nn.Linear(d_model, vocab_size)


    def forward(
        self, feats: torch.Tensor, lengths: torch.Tensor, chunk_frames: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Chunk-masked full-utterance pass: ``(B, T, F), (B,) -> (B, ceil(T/4), V), (B,)``.

        ``chunk_frames``: chunk size for this pass; by default ``self.chunk_frames``, or in training
        mode with ``dynamic_chunks`` one drawn from that list. Features past each utterance's end
        are zeroed and, with chunking, padded to a whole last chunk: exactly what a stream's flush
        feeds, so the padding of a batch never reaches a valid frame.
        """
        chunk = chunk_frames or self._training_chunk()
        b, t, f = feats.shape
        out_t = -(-t // self.subsampling_factor)
        padded_t = -(-out_t // chunk) * chunk if chunk else out_t
        feats = torch.cat([feats, feats.new_zeros(b, padded_t * self.subsampling_factor - t, f)], dim=1)
        past_end = torch.arange(feats.shape[1], device=feats.device)[None] >= lengths[:, None]
        x, out_lengths = self.subsampling(feats.masked_fill(past_end[..., None], 0.0), lengths)
        key_lengths = -(-out_lengths // chunk) * chunk if chunk else out_lengths
        mask = chunk_attention_mask(key_lengths, padded_t, chunk, self.left_chunks)
        x = self.dropout(x)
        history = x.new_zeros(b, self.conv_kernel - 1, x.shape[-1])
        rotation = rotary_angles(0, padded_t, x.shape[-1] // self.num_heads, x.device)
        for block in self.blocks:
            x, _, _, _ = block(x, rotation, mask, history)
        return self.head(x[:, :out_t]), out_lengths

    def stream_chunk(
        self, feats: torch.Tensor, state: StreamState | None
    ) -> tuple[torch.Tensor, StreamState]:
        """One streaming step on ``(1, chunk * 4, F)`` features; ``state=None`` starts an utterance.

        The chunk size is read from the input's length (a model trained with dynamic chunks streams
        at any of them). Returns ``(1, chunk, V)`` logits and the state for the next chunk.
        """
        chunk = feats.shape[1] // self.subsampling_factor
        if chunk < 1 or feats.shape[1] != self.stream_window(chunk) or feats.shape[0] != 1:
            raise ValueError(f"stream_chunk needs (1, chunk * {self.subsampling_factor}, F) features, "
                             f"got {tuple(feats.shape)}")
        with torch.inference_mode():
            x, _ = self.subsampling(feats, torch.tensor([feats.shape[1]]))
            if state is None:
                state = self._initial_state(x)
            rotation = rotary_angles(state.frames, chunk, x.shape[-1] // self.num_heads, x.device)
            keys, values, convs = [], [], []
            for i, block in enumerate(self.blocks):
                x, k, v, conv = block(x, rotation, None, state.conv[i], (state.keys[i], state.values[i]))
                # the next chunk sees left_chunks chunks back: keep the last left_chunks * chunk frames
                first_kept = max(0, k.shape[2] - self.left_chunks * chunk) if self.left_chunks >= 0 else 0
                keys.append(k[:, :, first_kept:])
                values.append(v[:, :, first_kept:])
                convs.append(conv)
            return self.head(x), StreamState(state.frames + chunk, torch.stack(keys), torch.stack(values),
                                             torch.stack(convs))

    def streaming_step(self, cmvn_mean: torch.Tensor, cmvn_std: torch.Tensor,
                       chunk_frames: int | None = None) -> ConformerStep:
        """This model's streaming step in sherpa-onnx's WeNet CTC contract (for ONNX export), the
        global CMVN ``(F,)`` folded in."""
        return ConformerStep(self, cmvn_mean, cmvn_std, chunk_frames)

    def _initial_state(self, x: torch.Tensor) -> StreamState:
        layers, d = len(self.blocks), x.shape[-1]
        empty = x.new_zeros(layers, 1, self.num_heads, 0, d // self.num_heads)
        return StreamState(0, empty, empty, x.new_zeros(layers, 1, self.conv_kernel - 1, d))



class ConformerStep(nn.Module):
    """A :class:`ChunkConformerCTC`'s streaming step in sherpa-onnx's WeNet streaming-CTC contract
    (``sherpa-onnx/csrc/online-wenet-ctc-model.cc``), so that every sherpa-onnx runtime runs the
    exported graph as it is (batch of 1; the chunk is fixed at export).

    ``forward(chunk, offset, required_cache_size, att_cache, cnn_cache, att_mask) -> (log_probs,
    r_att_cache, r_cnn_cache)``: ``chunk (1, C * 4, F)`` raw Kaldi fbank (the global CMVN is folded
    into the graph: the contract has none); ``offset (1,)`` int64, ``S`` plus the encoder frames so
    far (sherpa-onnx starts it at ``S``); ``required_cache_size (1,)`` = ``S`` = ``left_chunks * C``;
    ``att_cache (L, H, S, 2 * D/H)``: keys then values of the last S frames, already rotated;
    ``cnn_cache (L, 1, D, conv_kernel - 1)``; ``att_mask (1, 1, S + C)`` bool, False on the cache
    rows not yet filled. ``log_probs (1, C, V)``, as :meth:`ChunkConformerCTC.stream_chunk`'s logits.
    """

    input_names = ("chunk", "offset", "required_cache_size", "att_cache", "cnn_cache", "att_mask")
    output_names = ("log_probs", "r_att_cache", "r_cnn_cache")

    def __init__(self, model: ChunkConformerCTC, cmvn_mean: torch.Tensor, cmvn_std: torch.Tensor,
                 chunk_frames: int | None = None):
        super().__init__()
        chunk = chunk_frames or model.chunk_frames
        self.window = model.stream_window(chunk)  # refuses a full-context model
        if model.left_chunks < 0:
            raise ValueError("a ChunkConformerCTC with left_chunks=-1 keeps a cache that grows with the "
                             "stream; an exported graph needs a bounded one (left_chunks >= 0)")
        self.model, self.chunk_frames = model, chunk
        self.register_buffer("mean", cmvn_mean.float().clone())
        self.register_buffer("inv_std", 1.0 / cmvn_std.float())
        self.cache_frames = model.left_chunks * chunk

    def metadata(self) -> dict[str, int]:
        """The contract's metadata keys (sherpa-onnx reads them as integers). ``right_context`` is
        no look-ahead: the contract feeds ``(C - 1) * 4 + right_context + 1`` frames per chunk (WeNet's
        convolutional subsampling needs 7 for its first output), so 3 makes it ``C * 4``, what frame
        stacking takes."""
        model = self.model
        return {"output_size": model.head.in_features, "num_blocks": len(model.blocks),
                "head": model.num_heads,
                "cnn_module_kernel": model.conv_kernel, "subsampling_factor": model.subsampling_factor,
                "right_context": model.subsampling_factor - 1, "vocab_size": model.head.out_features,
                "chunk_size": self.chunk_frames, "left_chunks": model.left_chunks}

    def example_inputs(self) -> tuple[torch.Tensor, ...]:
        """The inputs that start an utterance, as sherpa-onnx builds them."""
        model, s = self.model, self.cache_frames
        d, heads = model.head.in_features, model.num_heads
        frames = self.window
        return (torch.zeros(1, frames, model.subsampling.proj.in_features // model.subsampling_factor),
                torch.tensor([s]), torch.tensor([s]),
                torch.zeros(len(model.blocks), heads, s, 2 * d // heads),
                torch.zeros(len(model.blocks), 1, d, model.conv_kernel - 1),
                torch.cat([torch.zeros(s, dtype=torch.bool), torch.ones(self.chunk_frames, dtype=torch.bool)])
                .view(1, 1, -1))

    def forward(self, chunk: torch.Tensor, offset: torch.Tensor, required_cache_size: torch.Tensor,
                att_cache: torch.Tensor, cnn_cache: torch.Tensor, att_mask: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One chunk (see the class docstring)."""
        model, c, s = self.model, self.chunk_frames, self.cache_frames
        x = model.subsampling.proj(((chunk - self.mean) * self.inv_std).reshape(1, c, -1))
        head_dim = x.shape[-1] // model.num_heads
        # positions count from the utterance's start; float32 angles: onnxruntime has no double Cos
        rotation = rotary_angles(offset - required_cache_size, c, head_dim, x.device, torch.float32)
        mask = att_mask[0].expand(c, s + c)  # keys are [cache, chunk]
        keys_values, convs = [], []
        for i, block in enumerate(model.blocks):
            k, v = att_cache[i : i + 1].split(head_dim, dim=-1)
            history = cnn_cache[i].transpose(1, 2)
            x, k, v, history = block(x, rotation, mask, history, (k, v))
            keys_values.append(torch.cat([k, v], dim=-1)[0, :, k.shape[2] - s :])
            convs.append(history.transpose(1, 2))
        return model.head(x).log_softmax(-1), torch.stack(keys_values), torch.stack(convs)
