"""Export a streaming model bundle to ONNX: for sherpa-onnx (the chunked Conformer) or, for a
student sherpa-onnx has no contract for (the Emformer), for asr_kd.runtime's own graph runner.

The chunked Conformer (:class:`asr_kd.models.conformer_stream.ChunkConformerCTC`) is written in
sherpa-onnx's WeNet streaming-CTC contract, so every sherpa-onnx program runs ``EXPORT_DIR`` as it
is (``OnlineRecognizer.from_wenet_ctc`` / ``--wenet-ctc-model``)::

    model.onnx        chunk (1, C*4, F) raw fbank, offset, required_cache_size, att_cache, cnn_cache,
                      att_mask -> log_probs (1, C, V), r_att_cache, r_cnn_cache; CMVN folded in;
                      metadata_props: output_size, num_blocks, head, cnn_module_kernel, right_context,
                      subsampling_factor, vocab_size, chunk_size, left_chunks
    model.int8.onnx   the same with int8 weights (onnxruntime dynamic quantization)
    tokens.txt        "<token> <id>" per line: blank ``<blk>``, the space of a character vocabulary as
                      ``▁`` (sherpa-onnx turns a leading ``▁`` into a space)
    meta.json         ``contract: wenet_ctc``, the front end to configure (Kaldi fbank options:
                      ``high_freq`` 0 and ``snip_edges`` true differ from sherpa-onnx's defaults), the
                      chunk and left chunks, and ``sha256`` of every graph (checked before loading)

The Emformer keeps ``contract: asr_kd``: ``model.onnx`` (streaming step: x (1, window, F) normalised
features + every state -> logits + new_<state>), ``model.full.onnx`` (whole utterance, any T),
``model.int8.onnx``, tokens.txt, meta.json with the front end, the CMVN and the states (names,
shapes, dtypes), for asr_kd.runtime.onnx_transcriber. Its model side is ``streaming_step(chunk)``
returning an ``nn.Module`` with ``forward(feats, *states)``, ``full(feats)``, ``state_names``,
``state_shapes``, ``initial_states()``, ``chunk_frames``, ``right_context_frames``,
``left_context_frames``, ``subsampling_factor`` and ``window``
(:class:`asr_kd.models.student.EmformerStep`).

The folder is written atomically: into a temporary sibling, then renamed over the old one, so a
killed export leaves the old folder (or none), never new graphs beside old metadata.
Exporter: torch's dynamo exporter (``torch.onnx.export(dynamo=True)``).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import onnx
import torch
from torch import nn

from asr_kd.data.tokenizer import WORD_START
from asr_kd.models.bundle import Bundle
from asr_kd.runtime.folder import sha256
from asr_kd.utils import atomic_path, write_json

__all__ = ["export_bundle", "quantize_int8", "write_tokens", "KALDI_FBANK_OPTIONS", "NAME_SCOPES",
           "FORMAT_VERSION"]

#: The layout this module writes; part of the export unit's fingerprint, so a folder written in an
#: older layout (2: sherpa-onnx's WeNet contract for the Conformer, checksums) is exported again.
FORMAT_VERSION = 2

log = logging.getLogger(__name__)

#: The torchaudio Kaldi fbank options of asr_kd.features.frontend.KaldiFbank that a runtime must match.
KALDI_FBANK_OPTIONS = {"dither": 0.0, "energy_floor": 0.0, "snip_edges": True, "window_type": "povey",
                       "preemphasis_coefficient": 0.97, "remove_dc_offset": True, "use_log_fbank": True,
                       "use_power": True, "low_freq": 20.0, "high_freq": 0.0, "samples_scale": 32768.0}


class _Full(nn.Module):
    """The step's ``full`` as a module's ``forward`` (what the exporter traces)."""

    def __init__(self, step: nn.Module):
        super().__init__()
        self.step = step

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.step.full(feats)


#: The node metadata kept in the written graphs: each node's PyTorch module (what ``keep_fp32`` matches).
NAME_SCOPES = "pkg.torch.onnx.name_scopes"


def _strip_debug_metadata(proto: onnx.ModelProto) -> None:
    """Drop the exporter's per-node debug metadata but :data:`NAME_SCOPES` (stack traces with the
    exporting machine's paths and source lines, FX node text, class hierarchies): 6-12% of the fp32
    file and 14-30% of the int8 one for the demo's students, and no use to a runtime."""
    for node in proto.graph.node:
        kept = [p for p in node.metadata_props if p.key == NAME_SCOPES]
        del node.metadata_props[:]
        node.metadata_props.extend(kept)


def _write_onnx(module: nn.Module, args: tuple, path: Path, input_names: list[str], output_names: list[str],
                opset: int, meta: dict[str, str], dynamic_shapes: dict | None = None) -> None:
    """Export ``module`` with the dynamo exporter, stamp ``meta`` into it, write it atomically."""
    program = torch.onnx.export(module, args, dynamo=True, input_names=input_names, output_names=output_names,
                                opset_version=opset, dynamic_shapes=dynamic_shapes, verbose=False)
    program.optimize()
    proto = program.model_proto
    _strip_debug_metadata(proto)
    onnx.helper.set_model_props(proto, meta)
    onnx.checker.check_model(proto)
    with atomic_path(path) as tmp:
        onnx.save(proto, tmp)


def _frontend(bundle: Bundle, system: str) -> dict:
    """The training front end as Kaldi fbank options a runtime can set."""
    frontend = bundle.frontend
    if frontend.get("backend") != "KaldiFbank":
        raise ValueError(f"ONNX export needs a KaldiFbank front end (the runtime computes Kaldi fbank), "
                         f"but {system} was trained on {frontend.get('backend')!r}")
    return {**frontend, **KALDI_FBANK_OPTIONS}


def _is_bpe(bundle: Bundle) -> bool:
    """Whether the vocabulary is BPE pieces (they hold ``▁``), not characters."""
    return any(WORD_START in t for t in bundle.tokenizer.tokens)


def _metadata(bundle: Bundle, step: nn.Module, system: str) -> dict:
    """meta.json of the ``asr_kd`` contract (the Emformer's)."""
    return {
        "contract": "asr_kd",
        "model_type": type(bundle.model).__name__,
        "system": system,
        "source_sha": bundle.sha,
        "sample_rate": bundle.frontend["sample_rate"],
        "feature": _frontend(bundle, system),
        "cmvn_mean": bundle.cmvn.mean.tolist(),
        "cmvn_std": bundle.cmvn.std.tolist(),
        "chunk_frames": step.chunk_frames,
        "right_context_frames": step.right_context_frames,
        "left_context_frames": step.left_context_frames,
        "subsampling_factor": step.subsampling_factor,
        "window_frames": step.window,
        "shift_frames": step.chunk_frames * step.subsampling_factor,
        "vocab_size": len(bundle.tokenizer),
        "blank_id": 0,
        "bpe": _is_bpe(bundle),
        "state_names": list(step.state_names),
        "state_shapes": [list(step.state_shapes[n]) for n in step.state_names],
        "state_dtypes": [str(s.dtype).removeprefix("torch.") for s in step.initial_states()],
    }


def write_tokens(path: Path, tokens: list[str]) -> None:
    """sherpa-onnx's ``tokens.txt``: ``<token> <id>`` per line, the space token as ``▁`` (which
    sherpa-onnx reads back as a space; a character vocabulary never holds ``▁`` itself)."""
    path.write_text("".join(f"{WORD_START if t == ' ' else t} {i}\n" for i, t in enumerate(tokens)),
                    encoding="utf-8")


def _module_path(node: onnx.NodeProto) -> str:
    """The PyTorch module a node came from (the dynamo exporter records it), e.g. ``model.head``."""
    scopes = next((p.value for p in node.metadata_props if p.key == NAME_SCOPES), "[]")
    names = [n for n in json.loads(scopes.replace("'", '"')) if n.count(".")]
    return names[-1] if names else ""


def quantize_int8(src: Path, dst: Path, keep_fp32: list[str] = ()) -> list[str]:
    """Dynamic int8 quantization of the MatMul/Gemm weights of ``src`` (activations quantized at run
    time). Nodes of a module whose path contains any of ``keep_fp32`` (e.g. ``model.head``,
    ``emformer_layers.0.``) stay float, as sherpa-onnx keeps sensitive layers. Returns those nodes."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    proto = onnx.load(src)
    excluded = [n.name for n in proto.graph.node if any(k in _module_path(n) for k in keep_fp32)]
    with atomic_path(dst) as tmp:
        # the quantizer first splits each Gemm into <name>_MatMul + <name>_Add: exclude those names too
        root = logging.getLogger()
        level = root.level
        root.setLevel(max(level, logging.WARNING))  # the quantizer logs each tensor it leaves at INFO on root
        try:
            quantize_dynamic(src, tmp, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"],
                             nodes_to_exclude=[*excluded, *(f"{n}_MatMul" for n in excluded)])
        finally:
            root.setLevel(level)
        quantized = onnx.load(tmp)
        # shape annotations of intermediate values: onnxruntime infers them again when it loads the
        # graph; 4% of the int8 file of the demo's Conformer student
        del quantized.graph.value_info[:]
        onnx.helper.set_model_props(quantized, {p.key: p.value for p in proto.metadata_props})
        onnx.save(quantized, tmp)
    return excluded


def _export_wenet(bundle: Bundle, out: Path, system: str, opset: int, chunk_frames: int | None) -> dict:
    """Write ``model.onnx`` in sherpa-onnx's WeNet CTC contract; returns meta.json's entries."""
    model = bundle.model
    step = model.streaming_step(bundle.cmvn.mean, bundle.cmvn.std, chunk_frames).eval()
    contract = step.metadata()
    props = {k: str(v) for k, v in contract.items()}
    with torch.no_grad():
        _write_onnx(step, step.example_inputs(), out / "model.onnx", list(step.input_names),
                    list(step.output_names), opset, props)
    return {"contract": "wenet_ctc", "model_type": type(model).__name__, "system": system,
            "source_sha": bundle.sha, "sample_rate": bundle.frontend["sample_rate"],
            "feature": _frontend(bundle, system), "chunk_frames": step.chunk_frames,
            "left_chunks": model.left_chunks, "subsampling_factor": model.subsampling_factor,
            "vocab_size": len(bundle.tokenizer), "blank_id": 0, "bpe": _is_bpe(bundle),
            "wenet_ctc": contract}


def _export_asr_kd(bundle: Bundle, out: Path, system: str, opset: int, chunk_frames: int | None) -> dict:
    """Write ``model.onnx`` and ``model.full.onnx`` of the ``asr_kd`` contract; returns meta.json."""
    step = bundle.model.streaming_step(chunk_frames).eval()
    meta = _metadata(bundle, step, system)
    props = {k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()}
    feats = torch.zeros(1, step.window, meta["feature"]["num_mel_bins"])
    with torch.no_grad():
        _write_onnx(step, (feats, *step.initial_states()), out / "model.onnx", ["x", *step.state_names],
                    ["logits", *(f"new_{n}" for n in step.state_names)], opset, props)
        utterance = torch.zeros(1, 3 * step.window, feats.shape[-1])
        frames = torch.export.Dim("T", min=1, max=1_000_000)
        _write_onnx(_Full(step).eval(), (utterance,), out / "model.full.onnx", ["x"], ["logits"], opset,
                    props, dynamic_shapes={"feats": {1: frames}})
    return meta


def export_bundle(bundle: Bundle, out_dir: str | Path, system: str = "model", opset: int = 18,
                  int8: bool = True, keep_fp32: list[str] = (), chunk_frames: int | None = None) -> dict:
    """Write the export of a streaming ``bundle`` into ``out_dir``, atomically (see module docstring);
    returns ``meta`` (also written as ``meta.json``) with the graphs' sizes and SHA-256 added."""
    model = bundle.model
    if not hasattr(model, "streaming_step"):
        raise ValueError(f"{system}: {type(model).__name__} has no streaming_step(); only streaming "
                         f"students export to a streaming ONNX graph")
    start = time.perf_counter()
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in out.parent.glob(f".{out.name}.*"):  # left by a killed export
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        wenet = getattr(model, "export_contract", "asr_kd") == "wenet_ctc"
        meta = (_export_wenet if wenet else _export_asr_kd)(bundle, tmp, system, opset, chunk_frames)
        if int8:
            meta["int8_fp32_nodes"] = quantize_int8(tmp / "model.onnx", tmp / "model.int8.onnx", keep_fp32)
        write_tokens(tmp / "tokens.txt", bundle.tokenizer.tokens)
        graphs = sorted(p.name for p in tmp.glob("*.onnx"))
        meta["export_seconds"] = round(time.perf_counter() - start, 2)
        meta["file_bytes"] = {f: (tmp / f).stat().st_size for f in graphs}
        meta["sha256"] = {f: sha256(tmp / f) for f in [*graphs, "tokens.txt"]}
        write_json(tmp / "meta.json", meta)
        os.chmod(tmp, 0o777 & ~_umask())
        _replace_dir(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("exported %s to %s in %.1f s: %s", system, out, meta["export_seconds"],
             ", ".join(f"{f} {b / 1e6:.2f} MB" for f, b in meta["file_bytes"].items()))
    return meta


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _replace_dir(new: Path, dst: Path) -> None:
    """Put folder ``new`` at ``dst`` by renames only: a kill at any point leaves a whole folder (the old
    one, possibly under ``.<name>.old``) or none at ``dst``, never a mix."""
    old = dst.with_name(f".{dst.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if dst.exists():
        dst.rename(old)
    new.rename(dst)
    shutil.rmtree(old, ignore_errors=True)
