"""Export a streaming model bundle to ONNX, for runtimes without PyTorch (sherpa-onnx / icefall style).

Writes into ``EXPORT_DIR``::

    model.onnx        streaming step: x (1, window, F) + every state -> logits (1, chunk, V) + new_<state>
    model.full.onnx   full utterance: x (1, T, F) -> logits (1, ceil(T/4), V), any T
    model.int8.onnx   model.onnx with int8 weights (onnxruntime dynamic quantization)
    tokens.txt        "<token> <id>" per line (the space token written ``<space>``), as sherpa-onnx reads
    meta.json         what a runtime needs (below); also in every graph's ``metadata_props``

Features are the normalised log-mel frames the model was trained on: the metadata holds the front
end (Kaldi fbank options), the global CMVN mean/std, the chunk and look-ahead in encoder frames,
the subsampling factor, the feature frames per step (``window_frames``, consecutive windows
overlapping by the look-ahead: each starts ``shift_frames`` after the previous) and the states'
names, shapes and dtypes (zeros start an utterance).

The model side is one small interface: ``model.streaming_step(chunk_frames)`` returns an
``nn.Module`` whose ``forward(feats, *states)`` is the step, whose ``full(feats)`` is the whole
utterance pass, and which has ``state_names``, ``state_shapes``, ``initial_states()``,
``chunk_frames``, ``right_context_frames``, ``left_context_frames``, ``subsampling_factor`` and
``window`` (:class:`asr_kd.models.student.EmformerStep`,
:class:`asr_kd.models.conformer_stream.ConformerStep`). Any streaming student that provides it
exports with this module unchanged.

Exporter: torch's dynamo exporter (``torch.onnx.export(dynamo=True)``); it exports both graphs of
both steps (whose caches are masked, not sliced by a Python int) with a dynamic ``T`` for the
full graph, in fewer nodes than the legacy tracer.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import onnx
import torch
from torch import nn

from asr_kd.models.bundle import Bundle
from asr_kd.utils import atomic_path, write_json

__all__ = ["export_bundle", "quantize_int8", "KALDI_FBANK_OPTIONS", "NAME_SCOPES"]

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


def _metadata(bundle: Bundle, step: nn.Module, system: str) -> dict:
    frontend = bundle.frontend
    if frontend.get("backend") != "KaldiFbank":
        raise ValueError(f"ONNX export needs a KaldiFbank front end (the runtime computes Kaldi fbank), "
                         f"but {system} was trained on {frontend.get('backend')!r}")
    return {
        "model_type": type(bundle.model).__name__,
        "system": system,
        "source_sha": bundle.sha,
        "sample_rate": frontend["sample_rate"],
        "feature": {**frontend, **KALDI_FBANK_OPTIONS},
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
        "state_names": list(step.state_names),
        "state_shapes": [list(step.state_shapes[n]) for n in step.state_names],
        "state_dtypes": [str(s.dtype).removeprefix("torch.") for s in step.initial_states()],
    }


def write_tokens(path: Path, tokens: list[str]) -> None:
    """sherpa-onnx's ``tokens.txt``: ``<token> <id>`` per line, the space token as ``<space>``."""
    with atomic_path(path) as tmp:
        tmp.write_text("".join(f"{'<space>' if t == ' ' else t} {i}\n" for i, t in enumerate(tokens)),
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


def export_bundle(bundle: Bundle, out_dir: str | Path, system: str = "model", opset: int = 18,
                  int8: bool = True, keep_fp32: list[str] = (), chunk_frames: int | None = None) -> dict:
    """Write the export of a streaming ``bundle`` into ``out_dir`` (see module docstring); returns
    ``meta`` (also written as ``meta.json``) with the files' sizes and the export time added."""
    model = bundle.model
    if not hasattr(model, "streaming_step"):
        raise ValueError(f"{system}: {type(model).__name__} has no streaming_step(); only streaming "
                         f"students export to a streaming ONNX graph")
    start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    step = model.streaming_step(chunk_frames).eval()
    meta = _metadata(bundle, step, system)
    props = {k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()}
    states = step.initial_states()
    feats = torch.zeros(1, step.window, meta["feature"]["num_mel_bins"])
    with torch.no_grad():
        _write_onnx(step, (feats, *states), out / "model.onnx", ["x", *step.state_names],
                    ["logits", *(f"new_{n}" for n in step.state_names)], opset, props)
        utterance = torch.zeros(1, 3 * step.window, feats.shape[-1])
        frames = torch.export.Dim("T", min=1, max=1_000_000)
        _write_onnx(_Full(step).eval(), (utterance,), out / "model.full.onnx", ["x"], ["logits"], opset,
                    props, dynamic_shapes={"feats": {1: frames}})
    files = ["model.onnx", "model.full.onnx"]
    if int8:
        meta["int8_fp32_nodes"] = quantize_int8(out / "model.onnx", out / "model.int8.onnx", keep_fp32)
        files.append("model.int8.onnx")
    write_tokens(out / "tokens.txt", bundle.tokenizer.tokens)
    meta["export_seconds"] = round(time.perf_counter() - start, 2)
    meta["file_bytes"] = {f: (out / f).stat().st_size for f in files}
    write_json(out / "meta.json", meta)
    log.info("exported %s to %s in %.1f s: %s", system, out, meta["export_seconds"],
             ", ".join(f"{f} {b / 1e6:.2f} MB" for f, b in meta["file_bytes"].items()))
    return meta
