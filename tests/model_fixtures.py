"""Tiny streaming models and audio that several test modules share: the Emformer and chunked
Conformer configs, a saved-and-loaded bundle, streaming helpers and speech-like audio."""

import shutil
from pathlib import Path

import numpy as np
import torch

from asr_kd.config import instantiate
from asr_kd.data.tokenizer import CharTokenizer
from asr_kd.features.cmvn import GlobalCMVN
from asr_kd.features.frontend import KaldiFbank
from asr_kd.models.bundle import load_bundle, save_bundle
from asr_kd.models.ctc import ctc_greedy

EMFORMER = {"_target_": "asr_kd.models.student.EmformerCTC", "input_dim": 80, "d_model": 32,
            "num_heads": 2, "ffn_dim": 64, "num_layers": 2, "chunk_frames": 4,
            "left_context_frames": 8, "right_context_frames": 1, "conv_kernel": 3}


def make_bundle(folder, config=EMFORMER, **overrides):
    """A tiny seeded bundle of ``config`` (a character vocabulary, a spread head bias so greedy
    output is not all blank), saved and loaded back as a user would."""
    torch.manual_seed(0)
    config = {**config, **overrides}
    tokenizer = CharTokenizer.from_texts(["abc de"])
    model = instantiate(config, vocab_size=len(tokenizer))
    with torch.no_grad():  # a large head bias spread makes greedy output non-trivial
        model.head.bias.copy_(torch.linspace(-1, 1, len(tokenizer)))
    path = folder / "model.pt"
    cmvn = GlobalCMVN(np.full(80, 10.0), np.full(80, 3.0))
    save_bundle(path, model, config, tokenizer, KaldiFbank().config(), cmvn)
    return load_bundle(path)


CONFORMER = {"_target_": "asr_kd.models.conformer_stream.ChunkConformerCTC", "input_dim": 80, "d_model": 32,
             "num_heads": 2, "ffn_dim": 64, "num_layers": 2, "conv_kernel": 5, "chunk_frames": 4,
             "left_chunks": 2}


def full_forward(bundle, audio, chunk_frames=None):
    feats = bundle.cmvn(KaldiFbank()(audio)).unsqueeze(0)
    with torch.no_grad():
        return bundle.model(feats, torch.tensor([feats.shape[1]]), chunk_frames=chunk_frames)


def stream(rec, audio, sizes):
    """Feed ``audio`` in pieces of ``sizes`` samples (cycled); returns the partial results."""
    partials, offset, i = [], 0, 0
    while offset < len(audio):
        partials.append(rec.accept_waveform(audio[offset : offset + sizes[i % len(sizes)]]))
        offset += sizes[i % len(sizes)]
        i += 1
    return partials


def assert_matches_full(rec, bundle, audio, final, chunk_frames=None):
    logits, lengths = full_forward(bundle, audio, chunk_frames)
    assert rec.logits.shape == logits[0].shape
    assert (rec.logits - logits[0]).abs().max().item() <= 1e-4
    ids = ctc_greedy(logits, lengths)[0]
    assert final == bundle.tokenizer.decode(ids) and rec.token_ids == ids


def speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.3 * np.sin(2 * np.pi * (200 + 150 * np.sin(3 * t)) * t) * (1 + np.sin(7 * t))
            + rng.normal(0, 0.02, t.size)).astype(np.float32)


def varied_bundle(folder: Path, config: dict = EMFORMER):
    """make_bundle's tiny model with a random head and no bias, so frames pick varied tokens."""
    bundle = make_bundle(folder, config)
    with torch.no_grad():
        torch.manual_seed(1)
        bundle.model.head.weight.normal_(0, 1.0)
        bundle.model.head.bias.zero_()
    return bundle


def damaged_export(export_dir: Path, copy: Path, how: str) -> Path:
    """A copy of ``export_dir`` whose ``model.onnx`` has 256 bytes flipped (``how="flip"``) or lost
    its second half (``"truncate"``): what a runtime must refuse before loading."""
    shutil.copytree(export_dir, copy)
    data = bytearray((copy / "model.onnx").read_bytes())
    if how == "flip":
        data[4000:4256] = bytes(b ^ 0x5A for b in data[4000:4256])
    else:
        data = data[: len(data) // 2]
    (copy / "model.onnx").write_bytes(bytes(data))
    return copy
