"""The recogniser of an export folder, whichever contract it was written in (asr_kd.export.onnx)."""

from __future__ import annotations

from pathlib import Path

from asr_kd.runtime.folder import open_export

__all__ = ["load_model"]


def load_model(export_dir: str | Path, int8: bool = False, threads: int = 1):
    """The recogniser of an export: sherpa-onnx for ``contract: wenet_ctc`` (asr_kd.runtime.sherpa),
    else asr_kd's own graph runner (asr_kd.runtime.onnx_transcriber, for the Emformer)."""
    graph = "model.int8.onnx" if int8 else "model.onnx"
    if open_export(export_dir, graph).get("contract") == "wenet_ctc":
        from asr_kd.runtime.sherpa import SherpaModel

        return SherpaModel(export_dir, int8=int8, threads=threads)
    from asr_kd.runtime.onnx_transcriber import OnnxModel

    return OnnxModel(export_dir, int8=int8, threads=threads)
