"""Stage ``decode``: greedy CTC on every test set, every system; students also streamed; with
``decode=beam_lm`` every system also with beam search, a word n-gram LM and a lexicon.

Reads:  ``models/<system>/model.pt``, ``features/<test set>``, ``data/<test set>.jsonl``
        (and ``data/train.jsonl`` for the LM).
Writes: ``decode/<system>/<set>.jsonl``: one line per utterance ``{"id", "ref", "hyp",
        "duration", "compute_s", "wall_s"}`` (``compute_s``: CPU seconds of the process, with
        ``decode.threads`` threads; ``wall_s``: elapsed seconds), plus a last line
        ``{"summary": {...}}`` whose ``rtf`` is CPU-based (stable on a shared machine),
        ``rtf_wall`` elapsed-based and (streamed decodes only) ``latency_ms`` algorithmic.
        Each student's greedy summaries (offline and streamed) also hold its symbol delay against the
        teacher (asr_kd.decoding.latency.SymbolDelays): ``symbol_delay_ms`` (mean), ``symbol_delay_p90_ms``,
        ``symbol_delay_utts`` (utterances aligned on both) and ``symbol_offset_frames`` (the shift of
        the teacher's targets that would align them to this student at this chunk; a stale
        ``shift_frames`` is logged), from the forced alignments of the transcripts that the teacher's
        decode keeps in ``decode/teacher/<set>.align_frames.json``.
        Streaming decodes are the systems ``<system>_streaming``, LM decodes ``<system>_lm``
        (the LM and lexicon, rebuilt from the train transcripts: ``decode/lm/``; their summary
        holds the ``lm_weight`` and ``blank_penalty`` used, chosen per system on ``dev_set`` among
        ``decode.lm.tune_weights`` x ``decode.lm.tune_blank_penalties``, or the fixed
        ``decode.lm.lm_weight`` / ``blank_penalty`` where those are null).
Run:    ``asr-kd stage=decode [decode.streaming=false] [decode.piece_ms=10] [decode.chunk_frames=4]
        [decode=beam_lm decode.lm.tune_weights=null decode.lm.lm_weight=1]``

Offline decodes read the stored features, so their RTF is the acoustic model's alone; streaming
decodes start from the audio samples (front end included), fed in pieces of ``decode.piece_ms``
through :class:`asr_kd.decoding.streaming.StreamingRecognizer` (``decode.chunk_frames``: another
chunk size than the model's, for students trained with dynamic chunks).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from omegaconf import DictConfig

from asr_kd.data.dataset import UtteranceDataset
from asr_kd.data.manifest import read_manifest
from asr_kd.decoding.corpus import decode_offline, decode_streaming, summarize
from asr_kd.decoding.latency import SymbolDelays
from asr_kd.decoding.lm import lm_searches, oov_rate, tune_lm_weight
from asr_kd.decoding.streaming import algorithmic_latency_ms
from asr_kd.features.cmvn import GlobalCMVN
from asr_kd.models.adapters import TeacherAdapter, is_pretrained, load_teacher
from asr_kd.models.bundle import Bundle, load_bundle
from asr_kd.stages.base import StageStamp
from asr_kd.stages.plan import Plan
from asr_kd.utils import read_json, write_json, write_jsonl

log = logging.getLogger(__name__)


def load_decoded(cfg: DictConfig, paths, system: str) -> tuple[Bundle | TeacherAdapter, GlobalCMVN]:
    """System ``system``'s bundle, or the pretrained teacher, and the CMVN its dataset reads with."""
    if system != "teacher" or not is_pretrained(cfg.teacher):
        bundle = load_bundle(paths.checkpoint(system))
        return bundle, bundle.cmvn
    return load_teacher(cfg.teacher, paths), GlobalCMVN.load(paths.cmvn)


def align_frames_path(paths, test_set: str) -> Path:
    """``decode/teacher/<set>.align_frames.json``: the teacher's forced alignments of the transcripts."""
    return paths.decode("teacher", test_set).with_suffix(".align_frames.json")


def symbol_delays(paths, system: str, test_set: str, bundle: Bundle | TeacherAdapter) -> SymbolDelays | None:
    """The teacher's alignments of ``test_set`` to collect, or ``system``'s symbol delays against them;
    ``None`` when the teacher's have not been written."""
    frame_ms = (bundle.frame_shift_ms if isinstance(bundle, TeacherAdapter)
                else bundle.frontend["frame_shift_ms"] * bundle.model.subsampling_factor)
    if system == "teacher":
        return SymbolDelays(bundle.tokenizer, frame_ms)
    reference = align_frames_path(paths, test_set)
    return SymbolDelays(bundle.tokenizer, frame_ms, read_json(reference)) if reference.exists() else None


def warn_stale_shift(plan: Plan, system: str, decode: str, test_set: str, offset: int | None) -> None:
    """Say when a system trained on targets delayed by a fixed ``shift_frames`` emits, as decoded here
    (e.g. streamed at another chunk than it was trained for), at another offset from the teacher:
    the shift is stale for this chunk (``delay_window`` adapts the delay per utterance instead)."""
    objective = plan.systems[system].objective if system in plan.systems else {}
    shift, window = objective.get("shift_frames", 0), objective.get("delay_window", 0)
    if offset is not None and shift and not shift <= offset <= shift + window:
        log.warning("decode: %s was trained on targets delayed %d frame(s), but %s on %s emits %d frame(s) "
                    "after the teacher: the shift is stale for this chunk (re-measure it, or use "
                    "distill.delay_window)", system, shift, decode, test_set, offset)


def decode_system(cfg: DictConfig, plan: Plan, system: str) -> None:
    stamp = StageStamp(cfg, f"decode/{system}", plan)
    if stamp.is_done():
        return
    paths = stamp.paths
    bundle, cmvn = load_decoded(cfg, paths, system)
    lm_search, lm_settings = None, {}
    if cfg.decode.lm:
        lm = cfg.decode.lm
        texts = [u.text for u in read_manifest(paths.manifest("train"))]
        make_search, words = lm_searches(texts, bundle.tokenizer, lm, paths.lm_dir)
        for test_set in cfg.test_sets:
            refs = [u.text for u in read_manifest(paths.manifest(test_set))]
            log.info("decode: LM lexicon of %d words; %.1f%% of %s's words are outside it", len(words),
                     100 * oov_rate(refs, words), test_set)
        weights = list(lm.tune_weights or [lm.lm_weight])
        penalties = list(lm.tune_blank_penalties or [lm.blank_penalty])
        best = (weights[0], penalties[0])
        if len(weights) * len(penalties) > 1:
            dev = UtteranceDataset.from_exp(paths, cfg.dev_set, cmvn, bundle.tokenizer)
            best, wers = tune_lm_weight(bundle, dev, make_search, weights, penalties)
            log.info("decode: %s_lm: LM weight %g, blank penalty %g chosen on %s (WER %s)", system, *best,
                     cfg.dev_set, ", ".join(f"{w:g}/{b:g}: {100 * e:.2f}%" for (w, b), e in wers.items()))
        lm_search = make_search(*best)
        lm_settings = {"lm_weight": best[0], "blank_penalty": best[1]}
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.decode.threads)
    try:
        for test_set in cfg.test_sets:
            dataset = UtteranceDataset.from_exp(paths, test_set, cmvn, bundle.tokenizer)
            runs = {system: (decode_offline, (bundle, dataset, None))}
            if lm_search is not None:
                runs[f"{system}_lm"] = (decode_offline, (bundle, dataset, lm_search))
            if bundle.streaming and cfg.decode.streaming:
                args = (bundle, dataset, cfg.decode.piece_ms, cfg.decode.chunk_frames)
                runs[f"{system}_streaming"] = (decode_streaming, args)
            measured = symbol_delays(paths, system, test_set, bundle)  # the teacher's alignments, read once
            for name, (decode, args) in runs.items():
                delays = None if measured is None or name.endswith("_lm") else measured.fresh()
                rows = decode(*args, on_scores=delays and delays.add)
                summary = summarize(rows)
                if name.endswith("_lm"):
                    summary.update(lm_settings)
                if delays is not None:
                    if delays.reference is None:
                        write_json(align_frames_path(paths, test_set), delays.to_json())
                    else:
                        summary.update(delays.summary())
                        warn_stale_shift(plan, system, name, test_set, summary["symbol_offset_frames"])
                if decode is decode_streaming:  # chunk + look-ahead + feature window
                    summary["latency_ms"] = algorithmic_latency_ms(bundle.model, bundle.frontend,
                                                                   cfg.decode.chunk_frames)
                write_jsonl(paths.decode(name, test_set), [*rows, {"summary": summary}])
                log.info("decode: %s on %s: RTF %.4f (CPU), %.4f (wall)", name, test_set, summary["rtf"],
                         summary["rtf_wall"])
    finally:
        torch.set_num_threads(threads)
    stamp.done()


def run(cfg: DictConfig) -> None:
    plan = Plan(cfg)
    for system in plan.decoded:
        decode_system(cfg, plan, system)
