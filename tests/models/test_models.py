"""Models: shapes, shared frame-rate rule, streaming parity, batch consistency, every config builds."""

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from asr_kd.config import instantiate
from asr_kd.models import ConformerCTC, EmformerCTC
from asr_kd.models.subsampling import subsampled_lengths

CONF = str(Path(__file__).resolve().parents[2] / "conf")


def tiny_student(**kw) -> EmformerCTC:
    args = dict(vocab_size=12, input_dim=20, d_model=32, num_heads=2, ffn_dim=64, num_layers=2)
    return EmformerCTC(**{**args, **kw}).eval()


@pytest.mark.parametrize("t", [1, 4, 5, 37, 100])
def test_teacher_and_student_share_frame_rate(t):
    teacher = ConformerCTC(12, input_dim=20, d_model=32, num_heads=2, ffn_dim=64, num_layers=1).eval()
    x, lengths = torch.randn(1, t, 20), torch.tensor([t])
    t_out, t_len = teacher(x, lengths)
    s_out, s_len = tiny_student()(x, lengths)
    assert t_out.shape == s_out.shape == (1, -(-t // 4), 12)
    assert t_len.item() == s_len.item() == subsampled_lengths(lengths, 4).item()


@pytest.mark.parametrize("chunk,right", [(4, 0), (8, 1), (3, 2)])
def test_streaming_chunks_equal_full_forward(chunk, right):
    torch.manual_seed(0)
    model = tiny_student(chunk_frames=chunk, right_context_frames=right, left_context_frames=6)
    t = 133
    x = torch.randn(1, t, 20)
    full, _ = model(x, torch.tensor([t]))
    step, window = chunk * 4, model.chunk_input_frames
    n_chunks = -(-full.shape[1] // chunk)
    padded = torch.cat([x, torch.zeros(1, n_chunks * step + window - step - t, 20)], 1)
    state, outs = None, []
    for i in range(n_chunks):
        out, state = model.stream_chunk(padded[:, i * step : i * step + window], state)
        outs.append(out)
    streamed = torch.cat(outs, 1)[:, : full.shape[1]]
    assert torch.allclose(streamed, full, atol=1e-4)


def tiny_teacher() -> ConformerCTC:
    return ConformerCTC(12, input_dim=20, d_model=32, num_heads=2, ffn_dim=64, num_layers=2).eval()


@pytest.mark.parametrize("make", [tiny_teacher, tiny_student], ids=["teacher", "student"])
def test_batch_equals_single_utterances(make):
    """Padding a short utterance in a batch (training, the cache stage) must not change its output:
    torchaudio's Conformer convolutions would read the padded frames if they were not masked."""
    torch.manual_seed(0)
    model = make()
    a, b = torch.randn(70, 20), torch.randn(41, 20)
    batch = torch.nn.utils.rnn.pad_sequence([a, b], batch_first=True)
    out, lengths = model(batch, torch.tensor([70, 41]))
    single, _ = model(b.unsqueeze(0), torch.tensor([41]))
    assert lengths.tolist() == [18, 11]
    assert torch.allclose(out[1, :11], single[0], atol=1e-4)


def test_teacher_batchnorm_statistics_come_from_valid_frames():
    """In training, BatchNorm normalises each channel over the valid frames only, and its running
    statistics move toward theirs, however much padding the batch holds."""
    torch.manual_seed(0)
    model = ConformerCTC(12, input_dim=20, d_model=32, num_heads=2, ffn_dim=64, num_layers=1, dropout=0.0)
    norm = model.encoder.conformer_layers[0].conv_module.sequential[3]
    seen = {}
    norm.register_forward_hook(lambda module, args, out: seen.update(x=args[0], y=out))
    batch = torch.nn.utils.rnn.pad_sequence([torch.randn(90, 20), torch.randn(30, 20)], batch_first=True)
    model.train()(batch, torch.tensor([90, 30]))
    valid = torch.cat([seen["x"][0, :, :23], seen["x"][1, :, :8]], dim=1)  # (C, valid frames)
    out = torch.cat([seen["y"][0, :, :23], seen["y"][1, :, :8]], dim=1)
    assert torch.allclose(out.mean(1), torch.zeros(32), atol=1e-4)
    biased = valid.var(1, unbiased=False)
    assert torch.allclose(out.var(1, unbiased=False), biased / (biased + norm.eps), atol=1e-4)
    assert torch.allclose(norm.running_mean, 0.1 * valid.mean(1), atol=1e-5)
    assert torch.allclose(norm.running_var, 0.9 + 0.1 * valid.var(1), atol=1e-5)


def test_every_model_config_instantiates_and_runs():
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        for group, option in [("teacher", "conformer_small"), ("teacher", "conformer_large"),
                              ("student", "emformer_small"), ("student", "conformer_stream_small")]:
            cfg = compose("config", overrides=[f"{group}={option}"])
            model = instantiate(cfg[group].model, vocab_size=30, input_dim=80).eval()
            with torch.no_grad():
                out, lengths = model(torch.randn(1, 57, 80), torch.tensor([57]))
            assert out.shape == (1, 15, 30) and lengths.item() == 15
            params = sum(p.numel() for p in model.parameters())
            if option == "conformer_large":
                assert params > 100e6


def test_demo_student_is_at_most_a_fifth_of_the_teacher():
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("config")
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    teacher = instantiate(cfg.teacher.model, vocab_size=30, input_dim=80)
    student = instantiate(cfg.student.model, vocab_size=30, input_dim=80)
    assert count(student) * 5 <= count(teacher)
