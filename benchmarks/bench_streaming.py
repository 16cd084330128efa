"""Streaming figures of a trained experiment: RTF on one thread, algorithmic and emission latency.

Rows (one utterance at a time, one torch thread, audio read and resampled beforehand):

* ``teacher``       offline: front end + CMVN + forward + greedy CTC on the whole file.
* ``<student>``     streaming through :class:`asr_kd.decoding.streaming.StreamingRecognizer`, the
                    audio fed in ``--piece-ms`` pieces (front end included), at the model's chunk
                    size; students trained with dynamic chunks once per chunk size of ``--chunks``
                    (default: their ``dynamic_chunks``).
* ``<student>_sherpa`` / ``<student>_sherpa_int8``  the exported graphs (``EXP/export/<student>``,
                    stage ``export``) streamed by sherpa-onnx's Python API on one thread, its own
                    front end, the same pieces: the device runtime against the project's.
* ``pocketsphinx``  the peer: PocketSphinx 5 with its bundled US-English model and LM, fed the same
                    pieces as 16-bit PCM (``pip install -e .[bench]``; skipped if missing).

Columns: WER; RTF = CPU seconds of the process / audio seconds (and the elapsed-time RTF, which
a shared machine inflates); algorithmic latency = chunk + right context + one feature window;
emission latency per correctly recognised word = audio time fed when the streamed student first
emits the word's last token minus the word's end in the audio, from a CTC forced alignment of the
reference on the teacher (``torchaudio.functional.forced_align``); mean and p90 (not for the
sherpa-onnx rows). For the offline teacher, emission is the end of the utterance. Streamed rows
also give the time to the first partial (audio fed when the first non-empty partial came, mean ms)
and to the final result (wall ms from the last piece to the final text, mean). Pocketsphinx's
partial results are not timed.

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_streaming.py --exp-dir EXP [--test-set test]
        [--systems student_ctc,student_kd] [--piece-ms 10] [--chunks 4,8,16] [--max-utts 100]
        [--repeats 1] [--no-pocketsphinx] [--json PATH]

Prints a table and writes ``--json`` (default ``benchmarks/results/streaming.json``). Targets
(demo recipe): student RTF <= 0.02 at 320 ms chunks fed in 10 ms pieces, algorithmic latency <= 400 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

import numpy as np
import torch

from asr_kd.data.audio import load_audio
from asr_kd.data.manifest import read_manifest
from asr_kd.decoding.latency import emission_latencies, word_end_times, word_times
from asr_kd.decoding.offline import OfflineRecognizer
from asr_kd.decoding.streaming import StreamingRecognizer, algorithmic_latency_ms
from asr_kd.models.bundle import load_bundle
from asr_kd.paths import ExpPaths
from asr_kd.scoring.wer import error_rates

REPO = Path(__file__).resolve().parent.parent
TARGET_RTF, TARGET_LATENCY_MS = 0.02, 400.0


def clock() -> tuple[float, float]:
    return time.process_time(), time.perf_counter()


def since(start: tuple[float, float]) -> tuple[float, float]:
    cpu, wall = clock()
    return cpu - start[0], wall - start[1]


def run_teacher(bundle, utts, wavs, sr):
    """Offline decode; also the word end times (forced alignment of the references)."""
    rec = OfflineRecognizer(bundle)
    rec(wavs[0])  # warm-up
    frame_s = bundle.model.subsampling_factor * bundle.frontend["frame_shift_ms"] / 1000
    hyps, cpu, wall, ends = [], 0.0, 0.0, {}
    for utt, wav in zip(utts, wavs, strict=True):
        start = clock()
        hyps.append(rec(wav))
        c, w = since(start)
        cpu, wall = cpu + c, wall + w
        ends[utt.id] = word_end_times(rec.logits, bundle.tokenizer, utt.text, frame_s)
        hyp_words, _ = word_times(bundle.tokenizer, rec.token_ids, [0.0] * len(rec.token_ids))
        ends[utt.id + "/hyp"] = (hyp_words, [len(wav) / sr] * len(hyp_words))
    return hyps, cpu, wall, ends


def run_student(bundle, utts, wavs, sr, piece_ms, chunk):
    """Stream every utterance; per word of the final hypothesis, the audio time it was emitted at."""
    rec = StreamingRecognizer(bundle, chunk_frames=chunk)
    piece = max(1, int(sr * piece_ms / 1000))
    hyps, cpu, wall, emitted, timing = [], 0.0, 0.0, {}, []
    for n, (utt, wav) in enumerate(zip([utts[0], *utts], [wavs[0], *wavs], strict=True)):  # 1st: warm-up
        rec.reset()
        times: list[float] = []
        start = clock()
        for offset in range(0, len(wav), piece):
            rec.accept_waveform(wav[offset : offset + piece])
            if len(rec.token_ids) > len(times):
                times += [rec.samples_in / sr] * (len(rec.token_ids) - len(times))
        before_final = time.perf_counter()
        hyp = rec.finalize()
        c, w = since(start)
        if n == 0:
            continue
        cpu, wall = cpu + c, wall + w
        hyps.append(hyp)
        timing.append((times[0] if times else None, time.perf_counter() - before_final))
        times = (times + [len(wav) / sr] * len(rec.token_ids))[: len(rec.token_ids)]
        emitted[utt.id] = word_times(bundle.tokenizer, rec.token_ids, times)
    return hyps, cpu, wall, emitted, rec.algorithmic_latency_ms, timing_stats(timing)


def run_sherpa(export_dir: Path, int8: bool, wavs, sr, piece_ms):
    """Stream every utterance through sherpa-onnx (asr_kd.runtime.sherpa, one thread)."""
    from asr_kd.runtime.sherpa import SherpaModel

    model = SherpaModel(export_dir, int8=int8, threads=1)
    piece = max(1, int(sr * piece_ms / 1000))
    hyps, cpu, wall, timing = [], 0.0, 0.0, []
    for n, wav in enumerate([wavs[0], *wavs]):  # 1st: warm-up
        stream, first = model.stream(), None
        start = clock()
        for offset in range(0, len(wav), piece):
            if stream.accept_waveform(wav[offset : offset + piece], sr) and first is None:
                first = (offset + piece) / sr
        before_final = time.perf_counter()
        hyp = stream.finalize()
        c, w = since(start)
        if n:
            cpu, wall = cpu + c, wall + w
            hyps.append(hyp)
            timing.append((first, time.perf_counter() - before_final))
    return hyps, cpu, wall, timing


def timing_stats(timing) -> dict:
    """Mean time to the first partial (audio s fed) and to the final result (wall s after the audio), ms."""
    firsts = [f for f, _ in timing if f is not None]
    return {"first_partial_ms": 1000 * float(np.mean(firsts)) if firsts else None,
            "final_ms": 1000 * float(np.mean([t for _, t in timing]))}


def run_pocketsphinx(wavs, sr, piece_ms):
    from pocketsphinx import Decoder

    if sr != 16000:
        raise ValueError("pocketsphinx's bundled model expects 16 kHz audio")
    decoder = Decoder(loglevel="ERROR")
    piece = max(1, int(sr * piece_ms / 1000))
    hyps, cpu, wall = [], 0.0, 0.0
    for n, wav in enumerate([wavs[0], *wavs]):
        pcm = (np.clip(wav, -1, 1) * 32767).astype(np.int16)
        start = clock()
        decoder.start_utt()
        for offset in range(0, len(pcm), piece):
            decoder.process_raw(pcm[offset : offset + piece].tobytes(), False, False)
        decoder.end_utt()
        hyp = decoder.hyp()
        c, w = since(start)
        if n:
            cpu, wall = cpu + c, wall + w
            hyps.append(hyp.hypstr if hyp is not None else "")
    return hyps, cpu, wall


def latency_stats(utts, ends, emitted) -> dict:
    lat = []
    for utt in utts:
        if ends.get(utt.id) is None or utt.id not in emitted:
            continue
        lat += emission_latencies(*ends[utt.id], *emitted[utt.id])
    if not lat:
        return {"emission_mean_ms": None, "emission_p90_ms": None, "timed_words": 0}
    return {"emission_mean_ms": 1000 * float(np.mean(lat)),
            "emission_p90_ms": 1000 * float(np.percentile(lat, 90)), "timed_words": len(lat)}


def row(name, mode, refs, hyps, cpus, walls, audio_s, algo_ms=None, latency=None, timing=None) -> dict:
    return {"system": name, "mode": mode, "wer": error_rates(refs, hyps)["wer"],
            "rtf": statistics.median(cpus) / audio_s, "rtf_wall": statistics.median(walls) / audio_s,
            "algorithmic_latency_ms": algo_ms,
            **(latency or {"emission_mean_ms": None, "emission_p90_ms": None, "timed_words": 0}),
            **(timing or {"first_partial_ms": None, "final_ms": None})}


def fmt(x, spec):
    return format(x, spec) if x is not None else format("-", ">" + spec.split(".")[0])


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--exp-dir", required=True, type=Path)
    ap.add_argument("--test-set", default="test")
    ap.add_argument("--systems", default=None, help="students, comma-separated (default: all in models/)")
    ap.add_argument("--piece-ms", type=float, default=10.0)
    ap.add_argument("--chunks", default=None,
                    help="chunk sizes (encoder frames) for dynamic-chunk students; default: their list")
    ap.add_argument("--max-utts", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=1, help="RTF is the median over this many passes")
    ap.add_argument("--no-pocketsphinx", action="store_true")
    ap.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "streaming.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    paths = ExpPaths(args.exp_dir.absolute())
    teacher = load_bundle(paths.checkpoint("teacher"))
    sr = teacher.frontend["sample_rate"]
    utts = read_manifest(paths.manifest(args.test_set))[: args.max_utts]
    wavs = [load_audio(u.audio, sr, u.start, u.end) for u in utts]
    refs = [u.text for u in utts]
    audio_s = sum(len(w) for w in wavs) / sr
    print(f"{len(utts)} utterances, {audio_s:.1f} s of audio ({args.test_set}); 1 torch thread; "
          f"pieces of {args.piece_ms:g} ms", file=sys.stderr)
    rows = []

    passes = [run_teacher(teacher, utts, wavs, sr) for _ in range(args.repeats)]
    hyps, _, _, ends = passes[0]
    offline_emit = {u.id: ends.pop(u.id + "/hyp") for u in utts}
    rows.append(row("teacher", "offline", refs, hyps, [p[1] for p in passes], [p[2] for p in passes], audio_s,
                    latency=latency_stats(utts, ends, offline_emit)))
    aligned = sum(ends[u.id] is not None for u in utts)

    systems = args.systems.split(",") if args.systems else sorted(
        p.parent.name for p in (paths.root / "models").glob("*/model.pt") if p.parent.name != "teacher")
    for system in systems:
        bundle = load_bundle(paths.checkpoint(system))
        if not bundle.model.streaming:
            continue
        chunks = [bundle.model.chunk_frames]
        if bundle.model.dynamic_chunks:  # one model, several latencies
            chunks = list(bundle.model.dynamic_chunks)
            if args.chunks:
                chunks = [int(c) for c in args.chunks.split(",")]
        for chunk in chunks:
            passes = [run_student(bundle, utts, wavs, sr, args.piece_ms, chunk) for _ in range(args.repeats)]
            hyps, _, _, emitted, algo, timing = passes[0]
            chunk_ms = chunk * bundle.model.subsampling_factor * bundle.frontend["frame_shift_ms"]
            rows.append(row(system, f"stream {chunk_ms:.0f} ms", refs, hyps, [p[1] for p in passes],
                            [p[2] for p in passes], audio_s, algo, latency_stats(utts, ends, emitted),
                            timing))
        export_dir = paths.export_dir(system)
        meta = export_dir / "meta.json"
        if not meta.exists() or json.loads(meta.read_text())["contract"] != "wenet_ctc":
            continue
        chunk = json.loads(meta.read_text())["chunk_frames"]
        algo = algorithmic_latency_ms(bundle.model, bundle.frontend, chunk)
        chunk_ms = chunk * bundle.model.subsampling_factor * bundle.frontend["frame_shift_ms"]
        for int8 in (False, True):
            if int8 and not (export_dir / "model.int8.onnx").exists():
                continue
            passes = [run_sherpa(export_dir, int8, wavs, sr, args.piece_ms) for _ in range(args.repeats)]
            name = f"{system}_sherpa{'_int8' if int8 else ''}"
            rows.append(row(name, f"sherpa-onnx {chunk_ms:.0f} ms", refs, passes[0][0],
                            [p[1] for p in passes], [p[2] for p in passes], audio_s, algo,
                            timing=timing_stats(passes[0][3])))

    if not args.no_pocketsphinx:
        try:
            passes = [run_pocketsphinx(wavs, sr, args.piece_ms) for _ in range(args.repeats)]
            rows.append(row("pocketsphinx", "stream (own en-us LM)", refs, passes[0][0],
                            [p[1] for p in passes], [p[2] for p in passes], audio_s))
        except ImportError:
            print("pocketsphinx not installed (pip install -e .[bench]): row skipped", file=sys.stderr)

    header = (f"{'system':<24} {'mode':<22} {'WER %':>6} {'RTF':>7} {'RTF wall':>8} {'algo ms':>7} "
              f"{'emit mean ms':>12} {'emit p90 ms':>11} {'words':>5} {'1st partial ms':>14} {'final ms':>8}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['system']:<24} {r['mode']:<22} {100 * r['wer']:6.1f} {r['rtf']:7.4f} {r['rtf_wall']:8.4f} "
              f"{fmt(r['algorithmic_latency_ms'], '7.0f')} {fmt(r['emission_mean_ms'], '12.0f')} "
              f"{fmt(r['emission_p90_ms'], '11.0f')} {r['timed_words']:5d} "
              f"{fmt(r['first_partial_ms'], '14.0f')} {fmt(r['final_ms'], '8.1f')}")
    print(f"word end times: forced alignment on the teacher for {aligned}/{len(utts)} utterances; "
          f"RTF = CPU s / audio s, median of {args.repeats} pass(es)")
    for r in rows:
        if r["mode"] == "stream 320 ms" and args.piece_ms == 10:
            ok = r["rtf"] <= TARGET_RTF and r["algorithmic_latency_ms"] <= TARGET_LATENCY_MS
            print(f"target {r['system']}: RTF {r['rtf']:.4f} <= {TARGET_RTF}, algorithmic latency "
                  f"{r['algorithmic_latency_ms']:.0f} <= {TARGET_LATENCY_MS:.0f} ms: "
                  f"{'met' if ok else 'NOT met'}")
    result = {"exp_dir": str(paths.root), "test_set": args.test_set, "utterances": len(utts),
              "audio_s": audio_s, "piece_ms": args.piece_ms, "threads": 1, "repeats": args.repeats,
              "aligned_utterances": aligned,
              "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                          "torch": torch.__version__, "load_avg": os.getloadavg()},
              "rows": rows}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}", file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
