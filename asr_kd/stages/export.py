"""Stage ``export``: ONNX graphs of the streaming systems of ``export.systems`` (the chunked
Conformer for sherpa-onnx, the Emformer for asr_kd.runtime), and their decodes of every test set
(in ``stage=all``, between ``decode`` and ``score``).

Reads:  ``models/<system>/model.pt``; ``data/<test set>.jsonl`` and ``data/<dev_set>.jsonl`` (the int8
        check) with their audio.
Writes: ``export/<system>/`` (asr_kd.export.onnx): ``model.onnx``, ``model.int8.onnx``,
        ``tokens.txt``, ``meta.json`` (with the graphs' SHA-256), for the Emformer also
        ``model.full.onnx``. With ``export.check_utterances`` > 0, ``meta.json`` gains ``int8_check``:
        fp32 and int8 WER on the first dev utterances. ``decode/<system>_sherpa/<set>.jsonl`` and
        ``decode/<system>_sherpa_int8/<set>.jsonl`` (sherpa-onnx's Python API: its own fbank, one
        thread, the chunk the student was trained for; the Emformer's: ``_onnx`` and ``_int8``):
        rows as stage ``decode``'s, summary with ``rtf`` (CPU,
        one onnxruntime thread, audio in ``export.piece_ms`` pieces, front end included),
        ``latency_ms``, ``size_mb`` (the graph file, MB), ``peak_rss_mb`` and ``base_rss_mb`` (peak
        resident memory of the decoding process, and of the same process before it loaded the graph:
        it runs only asr_kd.runtime, see asr_kd.runtime.measure).
Run:    ``asr-kd stage=export [export.systems=[student_kd,student_ctc]] [export.int8=false]
        [export.keep_fp32=[model.head]]``, then ``asr-kd-onnx exp/demo/export/student_kd FILE.wav``
        (or any sherpa-onnx program: README "Deploy").

Systems of the run whose student does not stream are skipped (logged). A name in ``export.systems``
that is no system of the run exports whatever ``models/<name>/model.pt`` holds (a model copied in);
its decodes cover the test sets whose manifests exist, and the report does not list it.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

import asr_kd
from asr_kd.data.audio import load_audio
from asr_kd.data.manifest import Utterance, read_manifest
from asr_kd.decoding.streaming import algorithmic_latency_ms
from asr_kd.export.onnx import export_bundle
from asr_kd.models.bundle import load_bundle
from asr_kd.runtime.loader import load_model
from asr_kd.scoring.wer import error_rates
from asr_kd.stages.base import StageStamp
from asr_kd.stages.plan import Plan
from asr_kd.utils import read_json, write_json, write_jsonl

log = logging.getLogger(__name__)

#: Decode variants of an exported system per contract: suffix -> int8 graph.
GRAPHS = {"wenet_ctc": {"_sherpa": False, "_sherpa_int8": True}, "asr_kd": {"_onnx": False, "_int8": True}}


def int8_check(export_dir: Path, manifest: Path, limit: int, sample_rate: int) -> dict:
    """WER of the fp32 and int8 streaming graphs on the first ``limit`` utterances of ``manifest``,
    and the fraction of utterances whose two transcripts are identical."""
    utts = read_manifest(manifest)[:limit]
    hyps = {}
    for int8 in (False, True):
        model = load_model(export_dir, int8=int8)
        hyps[int8] = []
        for utt in utts:
            stream = model.stream()
            stream.accept_waveform(load_audio(utt.audio, sample_rate, utt.start, utt.end))
            hyps[int8].append(stream.finalize())
    refs = [u.text for u in utts]
    same = sum(a == b for a, b in zip(hyps[False], hyps[True], strict=True))
    return {"utterances": len(utts), "set": manifest.stem, "fp32_wer": error_rates(refs, hyps[False])["wer"],
            "int8_wer": error_rates(refs, hyps[True])["wer"], "identical": same / max(len(utts), 1)}


def decode_exported(export_dir: Path, utts: list[Utterance], sample_rate: int, piece_ms: float,
                    graphs: dict[str, bool]) -> dict[str, tuple[list[dict], dict]]:
    """Stream ``utts`` through each graph of ``graphs`` (suffix -> int8) in a fresh torch-free process
    (asr_kd.runtime.measure), so its timings and resident memory are the runtime's alone.
    Returns, per suffix, the rows (as stage ``decode`` writes them) and the summary."""
    results = {}
    with tempfile.TemporaryDirectory(prefix="asr-kd-export-") as tmp:
        audio, index, offset = Path(tmp) / "audio.f32", [], 0
        with open(audio, "wb") as f:
            for utt in utts:
                samples = load_audio(utt.audio, sample_rate, utt.start, utt.end).astype(np.float32)
                samples.tofile(f)
                index.append({"id": utt.id, "offset": offset, "samples": len(samples)})
                offset += len(samples)
        root = str(Path(asr_kd.__file__).resolve().parent.parent)  # this asr_kd, wherever it is installed
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.getenv("PYTHONPATH")]))}
        for suffix, int8 in graphs.items():
            job = Path(tmp) / f"job{suffix}.json"
            job.write_text(json.dumps({"export_dir": str(export_dir), "int8": int8, "piece_ms": piece_ms,
                                       "audio": str(audio), "utts": index}), encoding="utf-8")
            proc = subprocess.run([sys.executable, "-m", "asr_kd.runtime.measure", str(job)],
                                  capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                raise RuntimeError(f"decoding with {export_dir} (int8={int8}) failed:\n{proc.stderr[-2000:]}")
            measured = json.loads(proc.stdout.strip().splitlines()[-1])
            rows = [{"id": u.id, "ref": u.text, **{k: v for k, v in r.items() if k != "id"}}
                    for u, r in zip(utts, measured["rows"], strict=True)]
            audio_s = sum(r["duration"] for r in rows)
            graph = export_dir / ("model.int8.onnx" if int8 else "model.onnx")
            summary = {"utterances": len(rows), "audio_s": audio_s,
                       "rtf": sum(r["compute_s"] for r in rows) / audio_s,
                       "rtf_wall": sum(r["wall_s"] for r in rows) / audio_s,
                       "threads": 1, "piece_ms": piece_ms, "size_mb": graph.stat().st_size / 1e6,
                       "peak_rss_mb": measured["peak_rss_mb"], "base_rss_mb": measured["base_rss_mb"]}
            results[suffix] = rows, summary
    return results


def export_system(cfg: DictConfig, plan: Plan, system: str) -> dict:
    """Export ``system`` and decode the test sets with its graphs, unless that is up to date."""
    settings = cfg.export
    stamp = StageStamp(cfg, f"export/{system}", plan)
    paths = stamp.paths
    out = paths.export_dir(system)
    if stamp.is_done():
        return read_json(out / "meta.json")
    bundle = load_bundle(paths.checkpoint(system))
    meta = export_bundle(bundle, out, system=system, opset=int(settings.opset), int8=bool(settings.int8),
                         keep_fp32=list(settings.keep_fp32), chunk_frames=settings.chunk_frames)
    dev = paths.manifest(cfg.dev_set)
    if settings.int8 and settings.check_utterances > 0 and dev.exists():
        meta["int8_check"] = int8_check(out, dev, int(settings.check_utterances), meta["sample_rate"])
        log.info("int8 check on %s: %s", dev, meta["int8_check"])
        write_json(out / "meta.json", meta)
    graphs = {s: int8 for s, int8 in GRAPHS[meta["contract"]].items() if settings.int8 or not int8}
    latency = algorithmic_latency_ms(bundle.model, bundle.frontend, meta["chunk_frames"])
    for test_set in cfg.test_sets:
        manifest = paths.manifest(test_set)
        if not manifest.exists():
            log.warning("export: no %s to decode %s's graphs on (run stage=prepare)", manifest, system)
            continue
        utts = read_manifest(manifest)
        decoded = decode_exported(out, utts, meta["sample_rate"], settings.piece_ms, graphs)
        for suffix, (rows, summary) in decoded.items():
            summary["latency_ms"] = latency
            write_jsonl(paths.decode(f"{system}{suffix}", test_set), [*rows, {"summary": summary}])
            log.info("export: %s%s on %s: RTF %.4f (1 thread, CPU), %.2f MB, peak RSS %.0f MB", system,
                     suffix, test_set, summary["rtf"], summary["size_mb"], summary["peak_rss_mb"])
    stamp.done({"export_seconds": meta["export_seconds"], "file_bytes": meta["file_bytes"]})
    return meta


def run(cfg: DictConfig) -> dict[str, dict]:
    """Export every streaming system of ``export.systems``; returns each one's ``meta.json``."""
    plan = Plan(cfg)
    metas = {}
    for system in plan.export_names:
        if system in plan.systems and system not in plan.exported:
            log.info("export: %s is an offline model (its student does not stream); not exported", system)
            continue
        metas[system] = export_system(cfg, plan, system)
    return metas
