"""Streaming recognizer: any piece size gives the chunk-masked full forward's logits; reset works."""

import numpy as np
import pytest
import torch

from asr_kd.data.tokenizer import CharTokenizer
from asr_kd.decoding.greedy import ctc_greedy
from asr_kd.decoding.streaming import StreamingRecognizer
from asr_kd.features.cmvn import GlobalCMVN
from asr_kd.features.frontend import KaldiFbank
from asr_kd.training.checkpoint import load_bundle, save_bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    torch.manual_seed(0)
    config = {"_target_": "asr_kd.models.student.EmformerCTC", "input_dim": 80, "d_model": 32,
              "num_heads": 2, "ffn_dim": 64, "num_layers": 2, "chunk_frames": 4,
              "left_context_frames": 8, "right_context_frames": 1}
    from asr_kd.config import instantiate

    tokenizer = CharTokenizer.from_texts(["abc de"])
    model = instantiate(config, vocab_size=len(tokenizer))
    path = tmp_path_factory.mktemp("bundle") / "model.pt"
    cmvn = GlobalCMVN(np.full(80, 10.0), np.full(80, 3.0))
    save_bundle(path, model, config, tokenizer, KaldiFbank().config(), cmvn)
    return load_bundle(path)


@pytest.fixture(scope="module")
def audio():
    rng = np.random.default_rng(0)
    t = np.arange(int(1.37 * 16000)) / 16000
    return (0.3 * np.sin(2 * np.pi * 300 * t) * (1 + np.sin(7 * t)) + rng.normal(0, 0.02, t.size)).astype(
        np.float32
    )


def full_forward(bundle, audio):
    feats = bundle.cmvn(KaldiFbank()(audio)).unsqueeze(0)
    with torch.no_grad():
        return bundle.model(feats, torch.tensor([feats.shape[1]]))


@pytest.mark.parametrize("piece_ms", [10, 37, 160, 1000])
def test_streamed_logits_and_text_equal_full_forward(bundle, audio, piece_ms):
    logits, lengths = full_forward(bundle, audio)
    rec = StreamingRecognizer(bundle)
    piece = int(16 * piece_ms)
    partials = [rec.accept_waveform(audio[i : i + piece]) for i in range(0, len(audio), piece)]
    final = rec.finalize()
    streamed = rec.logits[0]
    assert streamed.shape == logits[0].shape
    assert (streamed - logits[0]).abs().max().item() <= 1e-4
    assert final == bundle.tokenizer.decode(ctc_greedy(logits, lengths)[0])
    assert all(final.startswith(p) for p in partials)  # partial results only ever grow


def test_reset_gives_identical_second_utterance(bundle, audio):
    rec = StreamingRecognizer(bundle)
    rec.accept_waveform(audio)
    first = (rec.finalize(), rec.logits[0].clone())
    rec.reset()
    for i in range(0, len(audio), 800):
        rec.accept_waveform(audio[i : i + 800])
    assert rec.finalize() == first[0]
    assert torch.allclose(rec.logits[0], first[1], atol=1e-4)
