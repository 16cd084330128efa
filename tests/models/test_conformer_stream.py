"""The chunk-masked streaming Conformer: stateful streaming == chunk-masked full pass, batch ==
one by one whatever the padding holds, chunks never see the future, reset, constant memory over a
10-minute stream, dynamic chunk training, the full-context twin, bundles, config sizes."""

from pathlib import Path

import numpy as np
import pytest
import torch
from audio_fixtures import tone
from hydra import compose, initialize_config_dir
from model_fixtures import CONFORMER as CONFIG
from model_fixtures import assert_matches_full, make_bundle, stream

from asr_kd.config import instantiate
from asr_kd.decoding.streaming import StreamingRecognizer
from asr_kd.models import ChunkConformerCTC
from asr_kd.models.bundle import count_parameters, load_bundle, save_bundle
from asr_kd.models.conformer_stream import _rotate, chunk_attention_mask, rotary_angles

CONF = str(Path(__file__).resolve().parents[2] / "conf")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny(**kw) -> ChunkConformerCTC:
    torch.manual_seed(0)
    args = dict(vocab_size=12, input_dim=20, d_model=32, num_heads=2, ffn_dim=64, num_layers=2, conv_kernel=5,
                chunk_frames=4, left_chunks=2)
    return ChunkConformerCTC(**{**args, **kw}).eval()


def stream_feats(model, x, chunk):
    """Feed ``x (1, T, F)`` through ``stream_chunk`` chunk by chunk (tail zero-padded, as a flush);
    returns the ``(1, ceil(T/4), V)`` logits and the final state."""
    step, t = model.stream_window(chunk), x.shape[1]
    n = -(-t // step)
    x = torch.cat([x, x.new_zeros(1, n * step - t, x.shape[2])], dim=1)
    state, outs = None, []
    for i in range(n):
        out, state = model.stream_chunk(x[:, i * step : (i + 1) * step], state)
        outs.append(out)
    return torch.cat(outs, 1)[:, : -(-t // 4)], state


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("conformer"), CONFIG)


@pytest.fixture(scope="module")
def audio():
    noise = np.random.default_rng(0).normal(0, 0.02, 29000)
    return (tone(29000 / 16000, freq=300) * (1 + np.sin(np.arange(29000) / 2000)) + noise).astype(np.float32)


def test_chunk_attention_mask():
    m = chunk_attention_mask(torch.tensor([5]), 6, chunk_frames=2, left_chunks=1)[0, 0].int()
    expected = torch.tensor([[1, 1, 0, 0, 0, 0],  # chunk 0 sees itself
                             [1, 1, 0, 0, 0, 0],
                             [1, 1, 1, 1, 0, 0],  # chunk 1 sees chunks 0-1
                             [1, 1, 1, 1, 0, 0],
                             [0, 0, 1, 1, 1, 0],  # chunk 2 sees chunks 1-2, not key 5 (padding)
                             [0, 0, 1, 1, 1, 1]])  # a padded query also sees itself
    assert torch.equal(m, expected)
    lone = chunk_attention_mask(torch.tensor([2]), 6, chunk_frames=2, left_chunks=0)[0, 0]
    assert torch.equal(lone[2:, 2:], torch.eye(4, dtype=torch.bool))  # never an empty row (NaN)
    full = chunk_attention_mask(torch.tensor([4]), 6, chunk_frames=None, left_chunks=1)[0, 0].int()
    expected = torch.zeros(6, 6, dtype=torch.int)
    expected[:, :4] = 1  # every valid key, left_chunks aside
    expected[4, 4] = expected[5, 5] = 1
    assert torch.equal(full, expected)


@pytest.mark.parametrize("chunk,left,kept", [(1, 3, 3), (3, 0, 0), (4, 2, 8), (8, -1, 40)])
def test_streamed_chunks_equal_chunk_masked_forward(chunk, left, kept):
    """Also: the key/value cache holds left_chunks chunks (-1: every frame so far, 5 chunks of 8)."""
    model = tiny(chunk_frames=chunk, left_chunks=left)
    x = torch.randn(1, 133, 20)
    with torch.no_grad():
        full, _ = model(x, torch.tensor([133]))
    streamed, state = stream_feats(model, x, chunk)
    assert streamed.shape == full.shape == (1, 34, 12)
    assert (streamed - full).abs().max().item() <= 1e-5
    assert state.keys.shape[3] == state.values.shape[3] == kept


@pytest.mark.parametrize("piece_ms", [10, 37, 160, 1000])
def test_recognizer_streams_the_chunk_masked_forward(bundle, audio, piece_ms):
    assert isinstance(bundle.model, ChunkConformerCTC)  # rebuilt from the bundle's config
    rec = StreamingRecognizer(bundle)
    partials = stream(rec, audio, [16 * piece_ms])
    final = rec.finalize()
    assert_matches_full(rec, bundle, audio, final)
    assert final and all(final.startswith(p) for p in partials)
    assert rec.algorithmic_latency_ms == 4 * 40 + 25  # chunk, no look-ahead, feature window


def test_reset_gives_identical_results_for_the_next_utterance(bundle, audio):
    first = StreamingRecognizer(bundle)
    stream(first, audio[::-1].copy(), [800])
    first.finalize()
    first.reset()
    stream(first, audio, [800])
    fresh = StreamingRecognizer(bundle)
    stream(fresh, audio, [800])
    assert first.finalize() == fresh.finalize()
    assert torch.equal(first.logits, fresh.logits)


@pytest.mark.parametrize("chunk", [4, None], ids=["chunked", "full_context"])
def test_batch_equals_one_by_one_whatever_the_padding_holds(chunk):
    model = tiny(chunk_frames=chunk)
    lengths = [93, 41, 70]
    utts = [torch.randn(t, 20) for t in lengths]
    batch = torch.full((3, 93, 20), 1e3)  # loud padding: any frame reading it would show
    for i, u in enumerate(utts):
        batch[i, : len(u)] = u
    with torch.no_grad():
        out, out_lengths = model(batch, torch.tensor(lengths))
        for i, u in enumerate(utts):
            single, _ = model(u[None], torch.tensor([len(u)]))
            n = int(out_lengths[i])
            assert n == single.shape[1] == -(-len(u) // 4)
            assert (out[i, :n] - single[0]).abs().max().item() <= 1e-5


def test_a_chunk_never_sees_the_future_and_the_twin_does():
    x = torch.randn(1, 96, 20)
    later = x.clone()
    later[:, 32:] = torch.randn(1, 64, 20)  # change everything after the first two chunks
    for model, sees_future in [(tiny(), False), (tiny(chunk_frames=None), True)]:
        with torch.no_grad():
            a, b = model(x, torch.tensor([96]))[0], model(later, torch.tensor([96]))[0]
        assert torch.allclose(a[:, :8], b[:, :8], atol=1e-6) != sees_future


def test_full_context_twin_equals_chunking_disabled():
    model, twin = tiny(), tiny(chunk_frames=None)
    twin.load_state_dict(model.state_dict())  # same parameter names: the twin is the same network
    assert model.streaming and not twin.streaming
    x = torch.randn(1, 160, 20)
    with torch.no_grad():  # one chunk as long as the utterance: attention sees it all
        whole = model(x, torch.tensor([160]), chunk_frames=40)[0]
        assert torch.allclose(twin(x, torch.tensor([160]))[0], whole, atol=1e-6)
    with pytest.raises(ValueError, match="does not stream"):
        twin.stream_window(8)


def test_memory_is_constant_over_a_ten_minute_stream():
    model = tiny(chunk_frames=16, left_chunks=2)
    step = model.stream_window(16)
    chunks = 10 * 60 * 100 // step  # 10 minutes of 10 ms feature frames
    state, shapes = None, set()
    x = torch.randn(1, step, 20)
    for i in range(chunks):
        _, state = model.stream_chunk(x, state)
        if i >= 2:  # warmed up: the left chunks are full
            shapes.add((state.keys.shape, state.values.shape, state.conv.shape))
    assert shapes == {((2, 1, 2, 32, 16), (2, 1, 2, 32, 16), (2, 1, 4, 32))}
    assert state.frames == chunks * 16


def test_rotary_positions_are_relative_far_into_a_stream():
    q, k = torch.randn(1, 2, 5, 16), torch.randn(1, 2, 5, 16)
    near, far = rotary_angles(0, 5, 16), rotary_angles(15000, 5, 16)
    near = _rotate(q, near) @ _rotate(k, near).transpose(-1, -2)
    far = _rotate(q, far) @ _rotate(k, far).transpose(-1, -2)
    assert torch.allclose(near, far, atol=1e-4)


def test_dynamic_chunk_training_step():
    model = tiny(dynamic_chunks=[2, 8], left_chunks=0, dropout=0.0)
    x, lengths = torch.randn(2, 97, 20), torch.tensor([97, 30])
    with torch.no_grad():
        fixed = {c: model(x, lengths, chunk_frames=c)[0] for c in (2, 4, 8)}
    model.train()
    seen = set()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    for _ in range(8):
        logits, out_lengths = model(x, lengths)
        seen |= {c for c, ref in fixed.items() if torch.allclose(logits, ref, atol=1e-5)}
        targets = torch.tensor([[1, 2, 3], [4, 5, 0]])
        loss = torch.nn.functional.ctc_loss(logits.log_softmax(-1).transpose(0, 1), targets, out_lengths,
                                            torch.tensor([3, 2]))
        optimizer.zero_grad()
        loss.backward()  # padded rows past key_lengths see only themselves: no NaN leaks in
        assert all(torch.isfinite(p.grad).all() for p in model.parameters())
        optimizer.step()
        with torch.no_grad():
            model.eval()
            fixed = {c: model(x, lengths, chunk_frames=c)[0] for c in (2, 4, 8)}
            model.train()
    assert seen == {2, 8}
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


@pytest.mark.parametrize("chunk", [2, 4, 8])
def test_dynamic_chunk_bundle_streams_at_each_chunk_size(tmp_path, audio, chunk):
    bundle = make_bundle(tmp_path, CONFIG, dynamic_chunks=[2, 4, 8])
    rec = StreamingRecognizer(bundle, chunk_frames=chunk)
    stream(rec, audio, [160])
    assert_matches_full(rec, bundle, audio, rec.finalize(), chunk_frames=chunk)


def test_bundle_round_trip(tmp_path, bundle):
    save_bundle(tmp_path / "again.pt", bundle.model, bundle.model_config, bundle.tokenizer, bundle.frontend,
                bundle.cmvn)
    again = load_bundle(tmp_path / "again.pt")
    assert type(again.model) is ChunkConformerCTC and not again.model.training
    x = torch.randn(1, 77, 80)
    with torch.no_grad():
        assert torch.equal(again.model(x, torch.tensor([77]))[0], bundle.model(x, torch.tensor([77]))[0])


OPTIONS = sorted(p.stem for p in Path(CONF, "student").glob("conformer_*.yaml"))


def _student(option: str, *overrides: str) -> ChunkConformerCTC:
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("config", overrides=[f"student={option}", *overrides])
    return instantiate(cfg.student.model, vocab_size=29, input_dim=80)  # the demo's 29 characters


@pytest.mark.parametrize("recipe", ["demo", "smoke"])
@pytest.mark.parametrize("option", OPTIONS)
def test_every_config_builds_and_runs_under_each_recipe(option, recipe):
    model = _student(option, f"recipe={recipe}").eval()
    with torch.no_grad():
        out, lengths = model(torch.randn(1, 57, 80), torch.tensor([57]))
    assert out.shape == (1, 15, 29) and lengths.item() == 15
    assert model.streaming == option.startswith("conformer_stream")


def test_config_sizes_against_the_demo_teacher():
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("config")
    teacher = count_parameters(instantiate(cfg.teacher.model, vocab_size=29))
    small, tiny_ = (count_parameters(_student(f"conformer_stream_{s}")) for s in ("small", "tiny"))
    assert small <= teacher / 5 and tiny_ <= teacher / 10
    assert count_parameters(_student("conformer_full_small")) == small
    assert count_parameters(_student("conformer_full_tiny")) == tiny_
    assert _student("conformer_stream_dynamic").dynamic_chunks == (4, 8, 16)


@pytest.mark.parametrize("chunk,left", [(4, 2), (3, 0)])
def test_streaming_step_equals_stream_chunk(chunk, left):
    """The export interface (sherpa-onnx's WeNet CTC contract: raw features, CMVN folded in, a
    fixed-size cache masked by att_mask, offset from required_cache_size) driven as sherpa-onnx
    drives it gives stream_chunk's log-probabilities, also with no left context (a cache of size 0)."""
    model = tiny(chunk_frames=chunk, left_chunks=left)
    mean, std = torch.linspace(-1, 1, 20), torch.linspace(0.5, 2, 20)
    step = model.streaming_step(mean, std)
    assert step.window == chunk * 4 and step.cache_frames == left * chunk
    x = torch.randn(1, 133, 20)
    ref, _ = stream_feats(model, x, chunk)
    padded = torch.cat([x, x.new_zeros(1, -(-133 // step.window) * step.window - 133, 20)], dim=1)
    raw = padded * std + mean
    _, offset, size, att_cache, cnn_cache, _ = step.example_inputs()
    s, outs = step.cache_frames, []
    with torch.no_grad():
        for window in raw.split(step.window, dim=1):
            filled = min(s, int(offset) - s)  # as online-wenet-ctc-model.cc builds the mask
            mask = torch.cat([torch.arange(s) >= s - filled, torch.ones(chunk, dtype=torch.bool)])
            out, att_cache, cnn_cache = step(window, offset, size, att_cache, cnn_cache, mask.view(1, 1, -1))
            offset = offset + out.shape[1]
            outs.append(out)
        assert (torch.cat(outs, 1)[:, :34] - ref.log_softmax(-1)).abs().max().item() <= 1e-4
    assert att_cache.shape == (2, 2, s, 2 * 16) and cnn_cache.shape == (2, 1, 32, model.conv_kernel - 1)


def test_streaming_step_needs_a_bounded_chunked_model():
    with pytest.raises(ValueError, match="left_chunks"):
        tiny(left_chunks=-1).streaming_step(torch.zeros(20), torch.ones(20))
    with pytest.raises(ValueError, match="does not stream"):
        tiny(chunk_frames=None).streaming_step(torch.zeros(20), torch.ones(20))
