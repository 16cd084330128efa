"""ONNX export. The chunked Conformer goes to sherpa-onnx's WeNet CTC contract: sherpa-onnx itself
loads it (fp32 and int8) and decodes as the PyTorch streaming recogniser does. The Emformer keeps
asr_kd's contract: its streaming graph carries its state across chunks and gives the PyTorch
recognizer's logits; the full graph gives the model's forward for any length; int8 stays close; the
metadata describes the graph. Both: checksums checked before loading, the folder written atomically;
the stage writes exp_dir/export/<system>/ and skips when done."""

import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from hydra import compose, initialize_config_dir
from model_fixtures import CONFORMER, EMFORMER, damaged_export, make_bundle, speech_like, varied_bundle

import asr_kd
import asr_kd.export.onnx as export_onnx
from asr_kd.data.audio import save_audio
from asr_kd.data.manifest import Utterance, write_manifest
from asr_kd.decoding.streaming import StreamingRecognizer
from asr_kd.errors import ConfigError, DataError
from asr_kd.export.onnx import NAME_SCOPES, export_bundle, quantize_int8
from asr_kd.features.frontend import KaldiFbank
from asr_kd.paths import ExpPaths
from asr_kd.runtime.loader import load_model
from asr_kd.runtime.onnx_transcriber import OnnxModel, read_tokens
from asr_kd.runtime.sherpa import SherpaModel
from asr_kd.stages import PIPELINE
from asr_kd.stages.export import run
from asr_kd.stages.plan import Plan
from asr_kd.utils import read_jsonl

CONF = str(Path(__file__).resolve().parents[2] / "conf")
#: The state names of the Emformer's graph (asr_kd's contract).
EMFORMER_STATES = ["conv_cache", "cached_key", "cached_val", "processed_frames"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _export(folder: Path, config: dict):
    """A tiny random bundle of ``config`` (head bias spread: varied greedy output), its export, its meta."""
    bundle = make_bundle(folder, config)
    return bundle, folder / "onnx", export_bundle(bundle, folder / "onnx", system="tiny")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The Emformer in asr_kd's contract."""
    return _export(tmp_path_factory.mktemp("emformer"), EMFORMER)


@pytest.fixture(scope="module")
def sherpa_export(tmp_path_factory):
    """The chunked Conformer in sherpa-onnx's WeNet contract."""
    return _export(tmp_path_factory.mktemp("conformer"), CONFORMER)


def pytorch_text(bundle, wav: np.ndarray) -> str:
    rec = StreamingRecognizer(bundle)
    for i in range(0, len(wav), 1600):
        rec.accept_waveform(wav[i : i + 1600])
    return rec.finalize()


@pytest.mark.parametrize("seconds", [0.5, 1.0, 2.3, 3.7])
def test_sherpa_onnx_decodes_as_pytorch_streaming(sherpa_export, seconds):
    """sherpa-onnx (its own fbank, chunking and greedy CTC) gives the PyTorch recogniser's text."""
    bundle, folder, _ = sherpa_export
    wav = speech_like(seconds, seed=int(seconds * 10))
    text = pytorch_text(bundle, wav)
    graphs = [False, True] if seconds == 2.3 else [False]  # int8 of a random model: one clip
    for int8 in graphs:
        stream = SherpaModel(folder, int8=int8).stream()
        partials = [stream.accept_waveform(wav[i : i + 160]) for i in range(0, len(wav), 160)]
        assert len(text) >= 3 and stream.finalize() == text
        assert all(text.startswith(p) for p in partials) and any(partials)


def test_sherpa_onnx_resamples_and_its_stock_api_loads_the_folder(sherpa_export):
    """A 22.05 kHz clip decodes close to its 16 kHz twin; and sherpa-onnx's own
    ``from_wenet_ctc`` (the issue's reproduction) opens the folder as it is."""
    import sherpa_onnx
    import soxr

    bundle, folder, meta = sherpa_export
    wav = speech_like(2.3, seed=23)
    stream = SherpaModel(folder).stream()
    stream.accept_waveform(soxr.resample(wav, 16000, 22050).astype(np.float32), 22050)
    with pytest.raises(ValueError, match="one rate per stream"):  # sherpa-onnx would exit the process
        stream.accept_waveform(wav, 16000)
    text, reference = stream.finalize(), pytorch_text(bundle, wav)
    assert text and abs(len(text) - len(reference)) <= 0.3 * len(reference)  # a random model: close
    stock = sherpa_onnx.OnlineRecognizer.from_wenet_ctc(
        tokens=str(folder / "tokens.txt"), model=str(folder / "model.onnx"), chunk_size=meta["chunk_frames"],
        num_left_chunks=meta["left_chunks"], num_threads=1)
    s = stock.create_stream()
    s.accept_waveform(16000, np.concatenate([wav, np.zeros(8000, np.float32)]))
    while stock.is_ready(s):
        stock.decode_stream(s)
    assert stock.get_result(s)  # default front end (high_freq -400, no snip_edges): close, not equal


def test_sherpa_contract_metadata_and_tokens(sherpa_export):
    bundle, folder, meta = sherpa_export
    graph = onnx.load(folder / "model.onnx")
    assert [i.name for i in graph.graph.input] == ["chunk", "offset", "required_cache_size", "att_cache",
                                                   "cnn_cache", "att_mask"]
    assert [o.name for o in graph.graph.output] == ["log_probs", "r_att_cache", "r_cnn_cache"]
    props = {p.key: p.value for p in graph.metadata_props}
    model = bundle.model
    assert props == {"output_size": "32", "num_blocks": "2", "head": "2", "cnn_module_kernel": "5",
                     "subsampling_factor": "4", "right_context": "3", "chunk_size": "4", "left_chunks": "2",
                     "vocab_size": str(len(bundle.tokenizer))}
    assert max(i.version for i in graph.opset_import if i.domain in ("", "ai.onnx")) <= 18
    assert meta["contract"] == "wenet_ctc" and meta["chunk_frames"] == model.chunk_frames == 4
    assert meta["feature"]["high_freq"] == 0.0 and meta["feature"]["snip_edges"] is True
    lines = (folder / "tokens.txt").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "<blk> 0" and "\u2581 1" in lines  # the space, which sherpa-onnx reads as " "
    assert set(meta["sha256"]) == {"model.onnx", "model.int8.onnx", "tokens.txt"}
    assert {p.name for p in folder.iterdir()} == {"model.onnx", "model.int8.onnx", "tokens.txt", "meta.json"}


def test_kill_9_during_export_leaves_the_old_folder(sherpa_export, tmp_path):
    """SIGKILL once the new graph is written (in the temporary folder): the old export stays whole
    and loads (its checksums hold)."""
    bundle, folder, _ = sherpa_export
    out = tmp_path / "out"
    first = export_bundle(bundle, out, int8=False)
    code = ("import sys; from asr_kd.models.bundle import load_bundle; from asr_kd.export.onnx import "
            "export_bundle; export_bundle(load_bundle(sys.argv[1]), sys.argv[2])")
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder.parent / "model.pt"), str(out)],
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not any(tmp_path.glob(".out.*/model.onnx")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.kill()
    assert proc.wait(10) == -9  # killed midway, not finished or failed
    assert json.loads((out / "meta.json").read_text()) == first and not (out / "model.int8.onnx").exists()
    load_model(out)


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_damaged_graph_is_refused_before_loading(sherpa_export, tmp_path, damage):
    _, folder, _ = sherpa_export
    copy = damaged_export(folder, tmp_path / "copy", damage)
    with pytest.raises(DataError, match="model.onnx: SHA-256 differs"):
        load_model(copy)
    load_model(copy, int8=True)  # the other graph is intact


def test_export_replaces_the_folder_atomically(sherpa_export, tmp_path, monkeypatch):
    """An export that dies midway leaves the previous folder whole, and no temporary folder."""
    bundle, folder, _ = sherpa_export
    out = tmp_path / "out"
    first = export_bundle(bundle, out, int8=False)

    def die(*args, **kwargs):
        raise KeyboardInterrupt  # as a kill during quantization

    monkeypatch.setattr(export_onnx, "quantize_int8", die)
    with pytest.raises(KeyboardInterrupt):
        export_bundle(bundle, out, int8=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    (tmp_path / ".out.killed").mkdir()  # as a kill -9 leaves it: the next export removes it
    assert json.loads((out / "meta.json").read_text()) == first and not (out / "model.int8.onnx").exists()
    load_model(out)
    monkeypatch.undo()
    export_bundle(bundle, out, int8=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def onnx_stream(model: OnnxModel | SherpaModel, wav: np.ndarray, piece: int):
    stream = model.stream()
    partials = [stream.accept_waveform(wav[i : i + piece]) for i in range(0, len(wav), piece)]
    return stream.finalize(), stream, partials


@pytest.mark.parametrize("seconds", [0.04, 0.3, 1.37, 3.1])
def test_streaming_graph_matches_pytorch_recognizer(exported, seconds):
    bundle, folder, _ = exported
    wav = speech_like(seconds, seed=int(seconds * 100))
    rec = StreamingRecognizer(bundle)
    for i in range(0, len(wav), 1600):
        rec.accept_waveform(wav[i : i + 1600])
    text = rec.finalize()
    onnx_text, stream, partials = onnx_stream(OnnxModel(folder), wav, 160)
    logits = stream.logits[0]
    assert logits.shape == tuple(rec.logits.shape)
    if seconds > 1:  # several chunks, so the states were carried (and the text is not empty)
        assert len(rec.logits) > 3 * bundle.model.chunk_frames and text
        assert any(partials) and all(text.startswith(p) for p in partials)
    assert np.abs(logits - rec.logits.numpy()).max() <= 1e-4
    assert onnx_text == text and stream.token_ids == rec.token_ids


def test_emformer_runner_resamples(exported):
    """asr_kd's graph runner takes other rates too (soxr's streaming resampler), piece by piece."""
    import soxr

    bundle, folder, _ = exported
    wav = speech_like(2.0, seed=3)
    resampled = soxr.resample(wav, 16000, 22050).astype(np.float32)
    stream = OnnxModel(folder).stream()
    for i in range(0, len(resampled), 441):
        stream.accept_waveform(resampled[i : i + 441], 22050)
    text, reference = stream.finalize(), onnx_stream(OnnxModel(folder), wav, 160)[0]
    assert text and abs(len(text) - len(reference)) <= 0.3 * len(reference)  # a random model: close


def test_state_is_needed(exported):
    """Zeroing the states between chunks changes the logits: the graph really uses them."""
    bundle, folder, meta = exported
    model = OnnxModel(folder)
    feats = np.random.default_rng(0).normal(size=(2, meta["window_frames"], 80)).astype(np.float32)
    _, states = model.run_chunk(feats[0], model.initial_states())
    carried, _ = model.run_chunk(feats[1], states)
    fresh, _ = model.run_chunk(feats[1], model.initial_states())
    assert np.abs(carried - fresh).max() > 1e-3


@pytest.mark.parametrize("frames", [1, 17, 64, 301])
def test_full_graph_matches_forward_for_any_length(exported, frames):
    bundle, folder, _ = exported
    feats = torch.randn(1, frames, 80)
    with torch.no_grad():
        ref, _ = bundle.model(feats, torch.tensor([frames]))
    session = ort.InferenceSession(str(folder / "model.full.onnx"))
    out = session.run(None, {"x": feats.numpy()})[0]
    assert out.shape == tuple(ref.shape)
    assert np.abs(out - ref.numpy()).max() <= 1e-4


def test_int8_is_smaller_and_close(exported, tmp_path):
    """Tolerance: logits within 3% of the fp32 logits' largest magnitude and >= 95% of frames with
    the same greedy token, on a random head without bias (so frames pick varied tokens)."""
    bundle, _, meta = exported
    assert meta["file_bytes"]["model.int8.onnx"] < 0.75 * meta["file_bytes"]["model.onnx"]  # tiny: overhead
    export_bundle(varied_bundle(tmp_path, bundle.model_config), tmp_path)
    wavs = [speech_like(2.0, seed) for seed in range(3)]
    logits = [np.concatenate([onnx_stream(OnnxModel(tmp_path, int8=int8), wav, 1600)[1].logits[0]
                              for wav in wavs]) for int8 in (False, True)]
    assert len(set(logits[0].argmax(-1).tolist())) > 1
    assert np.abs(logits[0] - logits[1]).max() <= 0.03 * np.abs(logits[0]).max()
    assert (logits[0].argmax(-1) == logits[1].argmax(-1)).mean() >= 0.95


def test_metadata_describes_the_graph(exported):
    bundle, folder, meta = exported
    on_disk = json.loads((folder / "meta.json").read_text())
    assert on_disk == meta
    graph = onnx.load(folder / "model.onnx")
    props = {p.key: p.value for p in graph.metadata_props}
    assert json.loads(props["state_names"]) == meta["state_names"] == EMFORMER_STATES
    right = bundle.model.right_context_frames  # 1 for the Emformer
    assert json.loads(props["chunk_frames"]) == 4 and meta["window_frames"] == (4 + right) * 4
    assert np.allclose(json.loads(props["cmvn_mean"]), bundle.cmvn.mean.numpy())
    inputs = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.graph.input}
    states = dict(zip(meta["state_names"], meta["state_shapes"], strict=True))
    assert inputs == {"x": [1, meta["window_frames"], 80], **states}
    assert [o.name for o in graph.graph.output] == ["logits", *(f"new_{n}" for n in meta["state_names"])]
    assert {p.key for p in onnx.load(folder / "model.int8.onnx").metadata_props} == set(props)
    source = str(Path(asr_kd.__file__).parent).encode()
    for name in ("model.onnx", "model.full.onnx", "model.int8.onnx"):  # no stack traces, no local paths
        nodes = onnx.load(folder / name).graph.node
        assert {p.key for n in nodes for p in n.metadata_props} == {NAME_SCOPES}
        assert source not in (folder / name).read_bytes()
    assert read_tokens(folder / "tokens.txt") == bundle.tokenizer.tokens


def test_keep_fp32_leaves_named_modules_float(exported, tmp_path, caplog):
    _, folder, _ = exported
    with caplog.at_level(logging.INFO):
        kept = quantize_int8(folder / "model.onnx", tmp_path / "model.int8.onnx", keep_fp32=["model.head"])
        assert logging.getLogger().level == logging.INFO  # the root level is given back
    chatter = [r for r in caplog.records if r.name == "root" and r.levelno < logging.WARNING]
    assert not chatter  # the quantizer's per-tensor INFO lines
    graph = onnx.load(tmp_path / "model.int8.onnx")
    assert 1 <= len(kept) <= 2  # the head: one Gemm, or a MatMul and its bias Add
    float_matmuls = {n.name for n in graph.graph.node if n.op_type in ("Gemm", "MatMul")}
    assert len({*kept, *(k + "_MatMul" for k in kept)} & float_matmuls) == 1


def compose_config(*overrides: str):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose("config", overrides=list(overrides))


def test_export_stage(tmp_path):
    """A chunked Conformer copied into models/copied/ is exported, and every test set decoded with its
    fp32 and int8 graphs by sherpa-onnx, torch-free, in decode.py's row format, with size, RTF and
    memory."""
    assert PIPELINE.index("decode") < PIPELINE.index("export") < PIPELINE.index("score")
    paths = ExpPaths(tmp_path)
    paths.checkpoint("copied").parent.mkdir(parents=True)
    bundle = make_bundle(paths.model_dir("copied"), CONFORMER)
    utts, wavs = [], []
    for i in range(2):
        wavs.append(speech_like(1.0 + 0.3 * i, i))
        save_audio(tmp_path / f"u{i}.wav", wavs[-1], 16000)
        utts.append(Utterance(id=f"u{i}", audio=str(tmp_path / f"u{i}.wav"), duration=1.0, text="abc de"))
    for split in ("dev", "test_seen", "test_unseen"):
        write_manifest(paths.manifest(split), utts)
    cfg = compose_config(f"exp_dir={tmp_path}", "stage=export", "export.check_utterances=2",
                         "export.systems=[copied]")
    meta = run(cfg)["copied"]
    out = tmp_path / "export" / "copied"
    files = {"model.onnx", "model.int8.onnx", "tokens.txt", "meta.json"}
    assert {p.name for p in out.iterdir()} == files
    assert meta["source_sha"] == bundle.sha and meta["int8_check"]["utterances"] == 2
    assert meta["export_seconds"] < 30
    for suffix, graph in (("_sherpa", "model.onnx"), ("_sherpa_int8", "model.int8.onnx")):
        expected = [onnx_stream(SherpaModel(out, int8=suffix == "_sherpa_int8"), wav, 160)[0] for wav in wavs]
        for test_set in ("test_seen", "test_unseen"):
            *rows, last = read_jsonl(paths.decode(f"copied{suffix}", test_set))
            assert [set(r) for r in rows] == [{"id", "ref", "hyp", "duration", "compute_s", "wall_s"}] * 2
            assert [r["hyp"] for r in rows] == expected and [r["id"] for r in rows] == ["u0", "u1"]
            summary = last["summary"]
            assert summary["size_mb"] == (out / graph).stat().st_size / 1e6
            assert summary["rtf"] > 0 and summary["threads"] == 1 and summary["piece_ms"] == 10
            assert summary["latency_ms"] == 4 * 40 + 25  # chunk (no look-ahead) + feature window
            assert 0 < summary["base_rss_mb"] < summary["peak_rss_mb"] < 1000  # no torch in that process
    mtime = (out / "model.onnx").stat().st_mtime
    assert run(cfg) == {"copied": json.loads((out / "meta.json").read_text())}  # up to date: skipped
    assert (out / "model.onnx").stat().st_mtime == mtime


def test_plan_exports_streaming_systems_after_training_and_score_reads_them():
    plan = Plan(compose_config("exp_dir=/nonexistent"))
    assert plan.exported == ["student_kd"]
    assert plan.upstream("export/student_kd") == ("student/student_kd", "prepare")  # no model file read
    assert "export/student_kd" in plan.upstream("score")
    no_int8 = Plan(compose_config("exp_dir=/nonexistent", "export.int8=false"))
    assert no_int8.fingerprint("score") != plan.fingerprint("score")  # a changed export re-scores
    both = Plan(compose_config("exp_dir=/nonexistent", "export.systems=[student_kd,student_ctc]"))
    assert both.exported == ["student_kd", "student_ctc"]
    offline = Plan(compose_config("exp_dir=/nonexistent", "student=conformer_full_tiny"))
    assert offline.exported == [] and not any(u.startswith("export/") for u in offline.upstream("score"))
    conformer = Plan(compose_config("exp_dir=/nonexistent", "student=conformer_stream_tiny"))
    assert conformer.exported == ["student_kd"]
    with pytest.raises(ConfigError, match=r"export.systems must be a list"):
        assert Plan(compose_config("exp_dir=/nonexistent", "export.systems=student_kd")).exported


def test_export_refuses_other_front_ends(tmp_path):
    bundle = make_bundle(tmp_path)
    bundle.frontend = {**bundle.frontend, "backend": "LibrosaLogMel"}
    with pytest.raises(ValueError, match="KaldiFbank"):
        export_bundle(bundle, tmp_path / "out")
    assert KaldiFbank().config()["backend"] == "KaldiFbank"
