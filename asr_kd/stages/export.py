"""Stage ``export``: ONNX graphs of a streaming student for the torch-free runtime (not in ``stage=all``).

Reads:  ``models/<export.system>/model.pt``; ``data/<dev_set>.jsonl`` for the int8 check (if present).
Writes: ``export/<export.system>/``: ``model.onnx`` (streaming step with explicit states),
        ``model.full.onnx``, ``model.int8.onnx``, ``tokens.txt``, ``meta.json`` (asr_kd.export.onnx).
        With ``export.check_utterances`` > 0, ``meta.json`` gains ``int8_check``: fp32 and int8 WER
        on the first dev utterances, decoded with the exported graphs by asr_kd.runtime.
Run:    ``asr-kd stage=export [export.system=student_kd] [export.int8=false]
        [export.keep_fp32=[model.head]]``,
        then ``asr-kd-onnx exp/demo/export/student_kd FILE.wav``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from asr_kd.data.audio import load_audio
from asr_kd.data.manifest import read_manifest
from asr_kd.export.onnx import export_bundle
from asr_kd.models.bundle import load_bundle
from asr_kd.runtime.onnx_transcriber import OnnxModel
from asr_kd.scoring.wer import error_rates
from asr_kd.stages.base import StageStamp
from asr_kd.utils import read_json, write_json

log = logging.getLogger(__name__)


def int8_check(export_dir: Path, manifest: Path, limit: int, sample_rate: int) -> dict:
    """WER of the fp32 and int8 streaming graphs on the first ``limit`` utterances of ``manifest``,
    and the fraction of utterances whose two transcripts are identical."""
    utts = read_manifest(manifest)[:limit]
    hyps = {}
    for int8 in (False, True):
        model = OnnxModel(export_dir, int8=int8)
        hyps[int8] = []
        for utt in utts:
            stream = model.stream()
            stream.accept_waveform(load_audio(utt.audio, sample_rate, utt.start, utt.end))
            hyps[int8].append(stream.finalize())
    refs = [u.text for u in utts]
    same = sum(a == b for a, b in zip(hyps[False], hyps[True], strict=True))
    return {"utterances": len(utts), "set": manifest.stem, "fp32_wer": error_rates(refs, hyps[False])["wer"],
            "int8_wer": error_rates(refs, hyps[True])["wer"], "identical": same / max(len(utts), 1)}


def run(cfg: DictConfig) -> dict:
    settings = cfg.export
    system = str(settings.system)
    stamp = StageStamp(cfg, f"export/{system}")
    paths = stamp.paths
    checkpoint = paths.checkpoint(system)
    out = paths.export_dir(system)
    if stamp.is_done():
        return read_json(out / "meta.json")
    bundle = load_bundle(checkpoint)
    meta = export_bundle(bundle, out, system=system, opset=int(settings.opset), int8=bool(settings.int8),
                         keep_fp32=list(settings.keep_fp32), chunk_frames=settings.chunk_frames)
    dev = paths.manifest(cfg.dev_set)
    if settings.int8 and settings.check_utterances > 0 and dev.exists():
        meta["int8_check"] = int8_check(out, dev, int(settings.check_utterances), meta["sample_rate"])
        log.info("int8 check on %s: %s", dev, meta["int8_check"])
        write_json(out / "meta.json", meta)
    stamp.done({"export_seconds": meta["export_seconds"], "file_bytes": meta["file_bytes"]})
    return meta
