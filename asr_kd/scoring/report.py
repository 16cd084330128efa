"""The report: WER/CER per test set and system with confidence intervals, paired comparisons between
systems, size, speed and provenance, as JSON and Markdown (plots: asr_kd.scoring.plots).

``report.json``::

    {"test_sets": {SET: {SYSTEM: {"wer", "cer", "params", "size_mb", "rtf", "utterances", "latency_ms",
                                  ["lm_weight", "blank_penalty" (``_lm`` systems)],
                                  ["peak_rss_mb" (exported)],
                                  ["symbol_delay_ms", "symbol_delay_p90_ms", "symbol_offset_frames"
                                   (students, greedy offline and streamed)],
                                  "wer_ci95", "words", "sub", "del", "ins", "per_speaker"}}},
     "systems": {SYSTEM: {"params", "size_mb", "kind", "config", "dev_wer"}},
     "comparisons": [{"test_set", "a", "b", "delta", "ci95", "p", "p_improve", "p_wilcoxon"}],
     "bootstrap": {"resamples", "seed", "min_speakers", "interval",
                   "blocked_by": {SET: "speaker" | "utterance"}},
     "teacher": {"architecture", "sha", "input", "sample_rate", "frame_shift_ms", "vocabulary",
                 "params", "config"},
     "provenance": {"commit", "dirty", "overrides", "config", "torch", "torchaudio", "python", "cpu",
                    "gpu", "threads", "stage_wall_s", "corpus_sha"},
     ["target": target.json's content (a budget was set; asr_kd.scoring.target)]}

Keys, once:

- ``wer``, ``cer``: corpus error rates, fractions (0.05 = 5 %), after the one text normalisation.
- ``params``, ``size_mb``: the model's parameter count and fp32 weights in MB (1e6 bytes);
  ``kind``: ``streaming`` or ``offline``; ``dev_wer``: the model's last evaluation on the dev set in
  its training log (what settings are chosen on), ``null`` for a model not trained here.
- ``rtf``: CPU seconds per audio second on one thread; ``latency_ms``: the algorithmic latency of
  streamed decodes (chunk + look-ahead + feature window), ``null`` for offline ones, which wait for
  the end of the utterance. ``symbol_delay_ms``, ``symbol_delay_p90_ms``: mean and p90 over the
  test set's tokens of when a student's greedy decode (offline, or streamed at the decode's chunk)
  emits each token of the transcript (its first frame in the student's own CTC forced alignment)
  minus when the teacher does (its first frame in the teacher's), in ms
  (asr_kd.decoding.latency); ``symbol_offset_frames``: that mean in the student's frames, rounded:
  the ``distill.shift_frames`` that would align the teacher's targets to this student. Absent where
  not measured, ``null`` where no utterance could be aligned on both.
  ``utterances``: how many were decoded.
- ``<system>_streaming`` is a streamed decode, ``<system>_lm`` a beam search with the train
  transcripts' word LM and lexicon (``decode=beam_lm``) at ``lm_weight``, chosen for that system
  on the dev set. ``<system>_sherpa`` and ``<system>_sherpa_int8`` (the chunked Conformer, through
  sherpa-onnx), or ``<system>_onnx`` and ``<system>_int8`` (the Emformer, through asr_kd's own graph
  runner), are streamed by the exported fp32 and int8 graphs (stage ``export``), torch-free, one
  onnxruntime thread, audio in 10 ms pieces, front end included: their ``size_mb`` is the graph
  file's, ``peak_rss_mb`` the peak resident memory (MB) of the process that decoded the set, which
  holds only that runtime.
- ``wer_ci95``: ``[low, high]``, the 95 % bootstrap interval of ``wer`` (asr_kd.scoring.significance).
- ``words``: reference words; ``sub``, ``del``, ``ins``: substitutions, deletions, insertions
  (counts; ``wer`` = (sub + del + ins) / words).
- ``per_speaker``: ``{speaker: wer}`` from the speakers of the test set's manifest; ``{}`` when
  the manifest names none.
- ``comparisons``: system ``a`` against system ``b`` on one test set, paired on the same
  utterances and resamples: ``delta`` = WER(a) - WER(b) (fraction; negative: ``a`` is better),
  ``ci95`` its 95 % bootstrap interval, ``p`` the two-sided paired bootstrap p-value of "no
  difference", ``p_improve`` the share of resamples in which ``a`` is better (kaldialign's
  probability of improvement), ``p_wilcoxon`` a Wilcoxon signed-rank test on per-block WER
  differences. Listed: every student against every CTC-only baseline (like decodes with like:
  greedy, ``_streaming``, ``_lm``), then the pairs of ``score.compare``.
- ``bootstrap``: its settings: ``resamples``, ``seed``; ``interval``: ``percentile``;
  ``blocked_by`` per test set: ``speaker`` (speakers are resampled with all their utterances)
  when every utterance has a speaker and there are at least ``min_speakers`` of them, else
  ``utterance``.
- ``teacher``: the teacher that made the caches (``models/teacher/teacher.json``,
  asr_kd.models.adapters): ``architecture`` (a model class or ``torchaudio.pipelines.<BUNDLE>``,
  ``transformers.<Class>``), ``sha`` (of its weights' file), ``input`` (``features`` or
  ``waveform``), ``frame_shift_ms`` of its own frames (the caches merge them to the students'
  rate), ``vocabulary`` (its labels mapped to the students' tokens); ``null`` when unknown.
- ``provenance``: ``commit`` and ``dirty`` (tracked files modified) of the package's git checkout
  (``null`` outside one), ``overrides`` (the command line's), ``config`` (the resolved config),
  ``torch``, ``torchaudio``, ``python`` versions, ``cpu`` and ``gpu`` models, torch ``threads``,
  ``stage_wall_s`` (wall seconds of each finished stage, from ``stamps/``; ``null`` if not recorded),
  ``corpus_sha`` (the hash of the prepared manifests and audio that stage prepare recorded:
  asr_kd.data.manifest.corpus_hash; ``null`` if not recorded).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from asr_kd.scoring.significance import Bootstrap, Comparison
from asr_kd.scoring.target import target_markdown
from asr_kd.scoring.wer import UtteranceErrors, utterance_errors
from asr_kd.utils import read_jsonl

__all__ = ["VARIANTS", "Decode", "read_decode", "comparison_pairs", "speaker_blocks", "score_test_set",
           "verdict", "render_markdown"]

#: Suffixes of the decodes of one system (greedy offline, streamed, beam search with the LM, and
#: streamed by its exported fp32 and int8 ONNX graphs).
VARIANTS = ("", "_streaming", "_lm", "_onnx", "_int8", "_sherpa", "_sherpa_int8")


@dataclass(frozen=True)
class Decode:
    """One decode of one test set: its per-utterance errors, its summary line and the model behind it."""

    errors: UtteranceErrors
    summary: dict
    system: str


def read_decode(path: str | os.PathLike, system: str) -> Decode:
    """A decode file (``decode/<name>/<set>.jsonl``: one row per utterance, then a summary row), scored."""
    rows = read_jsonl(path)
    utts = rows[:-1]
    errors = utterance_errors([r["id"] for r in utts], [r["ref"] for r in utts], [r["hyp"] for r in utts])
    return Decode(errors, rows[-1]["summary"], system)


def comparison_pairs(
    names: Sequence[str],
    baselines: Sequence[str],
    students: Sequence[str],
    extra: Sequence[Sequence[str]] = (),
) -> list[tuple[str, str]]:
    """``(a, b)`` pairs among the decodes ``names``: each student against each baseline, variant by
    variant (``student_kd_lm`` against ``student_ctc_lm``), then ``extra`` pairs as given."""
    pairs = [
        (f"{s}{v}", f"{b}{v}")
        for b in baselines
        for s in students
        for v in VARIANTS
        if f"{s}{v}" in names and f"{b}{v}" in names
    ]
    for pair in extra:
        if len(pair) != 2:
            raise ValueError(f"score.compare takes pairs [a, b] of decodes, got {list(pair)}")
        a, b = pair
        missing = [n for n in (a, b) if n not in names]
        if missing:
            raise ValueError(f"score.compare names {', '.join(missing)}, which has no decode; decodes: "
                             f"{', '.join(names)}")
        if (a, b) not in pairs:
            pairs.append((a, b))
    return pairs


def speaker_blocks(
    ids: Sequence[str], speakers: dict[str, str | None] | None, min_speakers: int
) -> tuple[list[str] | None, list[str] | None]:
    """``(speakers of ids or None, blocks for the bootstrap or None)``: blocks are the speakers when
    every utterance has one and there are at least ``min_speakers``; else None (utterances)."""
    if speakers is None:
        return None, None
    unknown = [i for i in ids if i not in speakers]
    if unknown:
        raise ValueError(f"utterance {unknown[0]!r} of the decode is not in the test set's manifest "
                         f"({len(unknown)} such); decode again")
    labels = [speakers[i] for i in ids]
    if any(s is None for s in labels):
        return None, None
    return labels, labels if len(set(labels)) >= min_speakers else None


def _per_speaker(errors: np.ndarray, words: np.ndarray, labels: list[str] | None) -> dict[str, float]:
    if labels is None:
        return {}
    spk, index = np.unique(np.asarray(labels), return_inverse=True)
    wer = np.bincount(index, weights=errors) / np.bincount(index, weights=words)
    return {str(s): float(w) for s, w in zip(spk, wer, strict=True)}


def score_test_set(
    test_set: str,
    decodes: dict[str, Decode],
    sizes: dict[str, dict],
    speakers: dict[str, str | None] | None,
    pairs: Sequence[tuple[str, str]],
    resamples: int,
    seed: int,
    min_speakers: int,
) -> tuple[dict[str, dict], list[dict], str]:
    """The report entries of one test set's decodes, its comparisons and what the bootstrap blocked by.

    ``speakers`` maps utterance id -> speaker (None: unknown) from the manifest, or is None.
    Every decode must cover the same utterances (they are paired).
    """
    first = next(iter(decodes.values())).errors
    order = {u: i for i, u in enumerate(first.ids)}
    aligned = {}
    for name, d in decodes.items():
        if sorted(d.errors.ids) != sorted(first.ids):
            raise ValueError(f"decode {name} has other utterances than {next(iter(decodes))} "
                             f"({len(d.errors.ids)} vs {len(first.ids)}); decode every system again")
        aligned[name] = np.argsort([order[u] for u in d.errors.ids])  # decode order -> first's order
    labels, blocks = speaker_blocks(first.ids, speakers, min_speakers)
    boot = Bootstrap({n: d.errors.errors[aligned[n]] for n, d in decodes.items()}, first.words, blocks,
                     resamples, seed)
    entries = {}
    for name, d in decodes.items():
        e, size = d.errors, sizes[d.system]
        entries[name] = {
            "wer": e.wer, "cer": e.cer, "params": size["params"],
            "size_mb": d.summary.get("size_mb", size["size_mb"]),  # an exported graph's file
            "rtf": d.summary["rtf"], "utterances": len(e.ids), "latency_ms": d.summary.get("latency_ms"),
            **{k: d.summary[k] for k in ("lm_weight", "blank_penalty", "peak_rss_mb", "symbol_delay_ms",
                                         "symbol_delay_p90_ms", "symbol_offset_frames") if k in d.summary},
            "wer_ci95": list(boot.interval(name)), "words": int(e.words.sum()),
            "sub": int(e.sub.sum()), "del": int(e.dele.sum()), "ins": int(e.ins.sum()),
            "per_speaker": _per_speaker(e.errors[aligned[name]], first.words, labels),
        }
    comparisons = [_comparison_row(test_set, a, b, boot.compare(a, b)) for a, b in pairs]
    return entries, comparisons, "utterance" if blocks is None else "speaker"


def _comparison_row(test_set: str, a: str, b: str, c: Comparison) -> dict:
    return {"test_set": test_set, "a": a, "b": b, "delta": c.delta, "ci95": list(c.ci95), "p": c.p,
            "p_improve": c.p_improve, "p_wilcoxon": c.p_wilcoxon}


def verdict(c: dict) -> str:
    """A comparison in words: "a better than b on SET: -3.6 points [-5.1, -2.2], p = 0.001".

    Significant when the 95 % interval of the difference excludes zero.
    """
    low, high = c["ci95"]
    figures = f"{100 * c['delta']:+.1f} points [{100 * low:.1f}, {100 * high:.1f}], p = {c['p']:.2g}"
    if high < 0:
        return f"{c['a']} better than {c['b']} on {c['test_set']}: {figures}"
    if low > 0:
        return f"{c['a']} worse than {c['b']} on {c['test_set']}: {figures}"
    return f"{c['a']} vs {c['b']} on {c['test_set']}: no significant difference, {figures}"


def render_markdown(report: dict) -> str:
    """``report.md``: a table per test set (WER with its interval), the verdicts, the provenance."""
    lines = ["# asr-kd report", ""]
    blocked_by = report.get("bootstrap", {}).get("blocked_by", {})
    for test_set, systems in report["test_sets"].items():
        lines += [f"## {test_set}", "",
                  "| system | WER % [95% CI] | S / D / I | CER % | params | size MB | RTF (1 thread, CPU) "
                  "| latency ms |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for name, r in systems.items():
            latency = "utterance" if r.get("latency_ms") is None else f"{r['latency_ms']:.0f}"
            low, high = r["wer_ci95"]
            lines.append(
                f"| {name} | {100 * r['wer']:.2f} [{100 * low:.2f}, {100 * high:.2f}] "
                f"| {r['sub']} / {r['del']} / {r['ins']} | {100 * r['cer']:.2f} | {r['params']:,} "
                f"| {r['size_mb']:.2f} | {r['rtf']:.4f} | {latency} |"
            )
        weights = [f"{name} {r['lm_weight']:g}" + (f" (blank penalty {r['blank_penalty']:g})"
                                                    if r.get("blank_penalty") else "")
                   for name, r in systems.items() if "lm_weight" in r]
        lines += ["", f"LM weights (chosen on dev): {', '.join(weights)}"] if weights else []
        memory = [f"{name} {r['peak_rss_mb']:.0f} MB" for name, r in systems.items() if "peak_rss_mb" in r]
        lines += ["", f"Peak resident memory of the ONNX decodes (torch-free runtime): {', '.join(memory)}"
                  ] if memory else []
        delays = [f"{name} {r['symbol_delay_ms']:.0f} ms (p90 {r['symbol_delay_p90_ms']:.0f}, offset "
                  f"{r.get('symbol_offset_frames')} frames)"
                  for name, r in systems.items() if r.get("symbol_delay_ms") is not None]
        lines += ["", f"Symbol delay against the teacher's forced alignments: {', '.join(delays)}"
                  ] if delays else []
        verdicts = [verdict(c) for c in report.get("comparisons", []) if c["test_set"] == test_set]
        if verdicts:
            lines += ["", f"Paired comparisons (bootstrap by {blocked_by.get(test_set, 'utterance')}):", ""]
            lines += [f"- {v}" for v in verdicts]
        lines.append("")
    if report.get("target"):
        lines += target_markdown(report["target"])
    if "bootstrap" in report:
        b = report["bootstrap"]
        lines += [f"Intervals: {b['interval']} bootstrap, {b['resamples']} resamples, seed {b['seed']}; "
                  f"resampled by speaker where a test set has at least {b['min_speakers']} speakers.", ""]
    if report.get("teacher"):
        t = report["teacher"]
        lines += [f"Teacher: {t['architecture']} (weights {t['sha']}, {t['params']:,} parameters), reads "
                  f"{t['input']}, {t['frame_shift_ms']:g} ms frames, {len(t['vocabulary'])} tokens.", ""]
    if "provenance" in report:
        lines += _provenance_markdown(report["provenance"])
    return "\n".join(lines)


def _provenance_markdown(p: dict) -> list[str]:
    commit = "unknown" if p["commit"] is None else p["commit"][:12] + (" (dirty)" if p["dirty"] else "")
    walls = ", ".join(f"{k} {v:.0f} s" for k, v in p["stage_wall_s"].items() if v is not None)
    return [
        "## Provenance", "",
        f"- commit {commit}; overrides: {' '.join(p['overrides']) or 'none'}",
        f"- corpus {p['corpus_sha'] or 'unknown'} (hash of the prepared manifests and audio)",
        f"- torch {p['torch']}, torchaudio {p['torchaudio']}, Python {p['python']}; CPU {p['cpu']}, "
        f"GPU {p['gpu'] or 'none'}, {p['threads']} torch threads",
        *([f"- stage wall times: {walls}"] if walls else []),
        "",
    ]
