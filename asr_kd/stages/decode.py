"""Stage ``decode``: greedy CTC on every test set, every system; students also streamed; with
``decode=beam_lm`` every system also with beam search, a word n-gram LM and a lexicon.

Reads:  ``models/<system>/model.pt``, ``features/<test set>``, ``data/<test set>.jsonl``
        (and ``data/train.jsonl`` for the LM).
Writes: ``decode/<system>/<set>.jsonl``: one line per utterance ``{"id", "ref", "hyp",
        "duration", "compute_s", "wall_s"}`` (``compute_s``: CPU seconds of the process, with
        ``decode.threads`` threads; ``wall_s``: elapsed seconds), plus a last line
        ``{"summary": {...}}`` whose ``rtf`` is CPU-based (stable on a shared machine),
        ``rtf_wall`` elapsed-based and (streamed decodes only) ``latency_ms`` algorithmic.
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

import itertools
import logging
import time
from collections.abc import Callable

import torch
from omegaconf import DictConfig
from tqdm import tqdm

from asr_kd.data.audio import load_audio
from asr_kd.data.dataset import UtteranceDataset
from asr_kd.data.manifest import read_manifest
from asr_kd.decoding.lm import LexiconBeamSearch, oov_rate, write_word_lm
from asr_kd.decoding.streaming import StreamingRecognizer, algorithmic_latency_ms
from asr_kd.features.cmvn import GlobalCMVN
from asr_kd.models.adapters import TeacherAdapter, is_pretrained, load_teacher
from asr_kd.models.bundle import Bundle, load_bundle
from asr_kd.models.ctc import ctc_greedy
from asr_kd.scoring.wer import error_rates
from asr_kd.stages.base import StageStamp
from asr_kd.stages.plan import Plan
from asr_kd.utils import write_jsonl

log = logging.getLogger(__name__)


def greedy_search(bundle: Bundle) -> Callable[[torch.Tensor], str]:
    """Best path: ``(T, V)`` logits -> text."""
    return lambda logits: bundle.tokenizer.decode(ctc_greedy(logits[None], torch.tensor([len(logits)]))[0])


def emissions(bundle: Bundle | TeacherAdapter, dataset: UtteranceDataset, i: int) -> torch.Tensor:
    """``(T, V)`` scores of utterance ``i``: a bundle's logits from the stored features, or a pretrained
    teacher's log-posteriors from the input it reads (features or audio)."""
    if isinstance(bundle, TeacherAdapter):
        x, lengths = bundle.inputs(dataset, [i])
        log_probs, out_lengths = bundle.log_posteriors(x, lengths)
        return log_probs[0, : int(out_lengths[0])]
    feats = dataset[i]["feats"]
    logits, lengths = bundle.model(feats.unsqueeze(0), torch.tensor([len(feats)]))
    return logits[0, : int(lengths[0])]


def decode_offline(
    bundle: Bundle | TeacherAdapter,
    dataset: UtteranceDataset,
    search: Callable[[torch.Tensor], str] | None = None,
) -> list[dict]:
    """Full-context decode, one utterance at a time (as a device would run it); greedy by default."""
    search = search or greedy_search(bundle)
    rows = []
    with torch.inference_mode():  # warm-up: one-time allocations stay out of the timings
        emissions(bundle, dataset, 0)
    for i in tqdm(range(len(dataset)), desc="decode", dynamic_ncols=True, leave=False):
        utt = dataset.utts[i]
        clock = _Clock()
        with torch.inference_mode():
            scores = emissions(bundle, dataset, i)
        hyp = search(scores)
        rows.append({"id": utt.id, "ref": utt.text, "hyp": hyp, "duration": utt.duration, **clock.read()})
    return rows


def decode_streaming(
    bundle: Bundle, dataset: UtteranceDataset, piece_ms: float, chunk_frames: int | None = None
) -> list[dict]:
    """Feed each utterance's audio in ``piece_ms`` pieces through the streaming recognizer."""
    recognizer = StreamingRecognizer(bundle, chunk_frames=chunk_frames)
    sr = recognizer.sample_rate
    piece = max(1, int(sr * piece_ms / 1000))
    rows = []
    first = dataset.utts[0]
    recognizer.accept_waveform(load_audio(first.audio, sr, first.start, first.end))  # warm-up
    recognizer.finalize()
    for utt in tqdm(dataset.utts, desc="stream", dynamic_ncols=True, leave=False):
        wav = load_audio(utt.audio, sr, utt.start, utt.end)
        recognizer.reset()
        clock = _Clock()
        for offset in range(0, len(wav), piece):
            recognizer.accept_waveform(wav[offset : offset + piece])
        hyp = recognizer.finalize()
        rows.append({"id": utt.id, "ref": utt.text, "hyp": hyp, "duration": len(wav) / sr, **clock.read()})
    return rows


class _Clock:
    """CPU and elapsed seconds since construction."""

    def __init__(self):
        self.cpu, self.wall = time.process_time(), time.perf_counter()

    def read(self) -> dict:
        return {"compute_s": time.process_time() - self.cpu, "wall_s": time.perf_counter() - self.wall}


def summarize(rows: list[dict]) -> dict:
    audio = sum(r["duration"] for r in rows)
    return {"utterances": len(rows), "audio_s": audio, "rtf": sum(r["compute_s"] for r in rows) / audio,
            "rtf_wall": sum(r["wall_s"] for r in rows) / audio}


def build_lm(paths, tokenizer, lm_cfg: DictConfig, test_sets) -> Callable[[float, float], LexiconBeamSearch]:
    """The lexicon and n-gram LM of the train transcripts (``decode/lm/``); returns a maker of beam
    searches on them, by LM weight and blank penalty."""
    texts = [u.text for u in read_manifest(paths.manifest("train"))]
    arpa, lexicon, words = write_word_lm(texts, tokenizer, paths.lm_dir, lm_cfg.order, lm_cfg.discount)
    for test_set in test_sets:
        refs = [u.text for u in read_manifest(paths.manifest(test_set))]
        log.info("decode: LM lexicon of %d words; %.1f%% of %s's words are outside it", len(words),
                 100 * oov_rate(refs, words), test_set)
    return lambda lm_weight, blank_penalty: LexiconBeamSearch(
        tokenizer, lexicon, arpa, beam_size=lm_cfg.beam_size, lm_weight=lm_weight,
        word_score=lm_cfg.word_score, blank_penalty=blank_penalty)


def tune_lm_weight(
    bundle: Bundle | TeacherAdapter,
    dataset: UtteranceDataset,
    make_search: Callable[[float, float], Callable[[torch.Tensor], str]],
    weights: list[float],
    penalties: list[float],
) -> tuple[tuple[float, float], dict[tuple[float, float], float]]:
    """The (LM weight, blank penalty) pair of ``weights`` x ``penalties`` with the lowest WER on
    ``dataset`` (the first on ties), and every pair's WER. Each system gets its own: how much the LM
    should count depends on how sharp the acoustic model's posteriors are, which distillation changes."""
    with torch.inference_mode():
        scores = [emissions(bundle, dataset, i)
                  for i in tqdm(range(len(dataset)), desc="tune LM weight", dynamic_ncols=True, leave=False)]
    refs = [u.text for u in dataset.utts]
    wers = {}
    for pair in itertools.product(weights, penalties):
        search = make_search(*pair)
        wers[pair] = error_rates(refs, [search(e) for e in scores])["wer"]
    return min(wers, key=wers.__getitem__), wers


def load_decoded(cfg: DictConfig, paths, system: str) -> tuple[Bundle | TeacherAdapter, GlobalCMVN]:
    """System ``system``'s bundle, or the pretrained teacher, and the CMVN its dataset reads with."""
    if system != "teacher" or not is_pretrained(cfg.teacher):
        bundle = load_bundle(paths.checkpoint(system))
        return bundle, bundle.cmvn
    return load_teacher(cfg.teacher, paths), GlobalCMVN.load(paths.cmvn)


def decode_system(cfg: DictConfig, plan: Plan, system: str) -> None:
    stamp = StageStamp(cfg, f"decode/{system}", plan)
    if stamp.is_done():
        return
    paths = stamp.paths
    bundle, cmvn = load_decoded(cfg, paths, system)
    lm_search, lm_settings = None, {}
    if cfg.decode.lm:
        lm = cfg.decode.lm
        make_search = build_lm(paths, bundle.tokenizer, lm, cfg.test_sets)
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
            runs = {system: (decode_offline, (bundle, dataset))}
            if lm_search is not None:
                runs[f"{system}_lm"] = (decode_offline, (bundle, dataset, lm_search))
            if bundle.streaming and cfg.decode.streaming:
                args = (bundle, dataset, cfg.decode.piece_ms, cfg.decode.chunk_frames)
                runs[f"{system}_streaming"] = (decode_streaming, args)
            for name, (decode, args) in runs.items():
                rows = decode(*args)
                summary = summarize(rows)
                if name.endswith("_lm"):
                    summary.update(lm_settings)
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
