"""Stage ``decode``: greedy CTC on every test set, every system; students also streamed.

Reads:  ``models/<system>/model.pt``, ``features/<test set>``, ``data/<test set>.jsonl``.
Writes: ``decode/<system>/<set>.jsonl``: one line per utterance ``{"id", "ref", "hyp",
        "duration", "compute_s"}`` (``compute_s``: seconds of CPU work on one thread), plus a
        last line ``{"summary": {...}}``. Streaming decodes are the systems ``<system>_streaming``.
Run:    ``asr-kd stage=decode [decode.streaming=false] [decode.piece_ms=10]``

Offline decodes read the stored features, so their RTF is the acoustic model's alone; streaming
decodes start from the audio samples (front end included), fed in pieces of ``decode.piece_ms``.
"""

from __future__ import annotations

import logging
import time

import torch
from omegaconf import DictConfig
from tqdm import tqdm

from asr_kd.data.audio import load_audio
from asr_kd.data.dataset import UtteranceDataset
from asr_kd.decoding.greedy import ctc_greedy
from asr_kd.decoding.streaming import StreamingRecognizer
from asr_kd.stages.base import StageStamp
from asr_kd.training.checkpoint import Bundle, load_bundle
from asr_kd.utils import write_jsonl

log = logging.getLogger(__name__)


def decode_offline(bundle: Bundle, dataset: UtteranceDataset) -> list[dict]:
    """Full-context greedy decode, one utterance at a time (as a device would run it)."""
    rows = []
    for i in tqdm(range(len(dataset)), desc="decode", dynamic_ncols=True, leave=False):
        item, utt = dataset[i], dataset.utts[i]
        start = time.perf_counter()
        with torch.no_grad():
            logits, lengths = bundle.model(item["feats"].unsqueeze(0), torch.tensor([len(item["feats"])]))
        ids = ctc_greedy(logits, lengths)[0]
        rows.append({"id": utt.id, "ref": utt.text, "hyp": bundle.tokenizer.decode(ids),
                     "duration": utt.duration, "compute_s": time.perf_counter() - start})
    return rows


def decode_streaming(bundle: Bundle, dataset: UtteranceDataset, piece_ms: float) -> list[dict]:
    """Feed each utterance's audio in ``piece_ms`` pieces through the streaming recognizer."""
    recognizer = StreamingRecognizer(bundle)
    sr = recognizer.frontend.sample_rate
    piece = max(1, int(sr * piece_ms / 1000))
    rows = []
    for utt in tqdm(dataset.utts, desc="stream", dynamic_ncols=True, leave=False):
        wav = load_audio(utt.audio, sr, utt.start, utt.end)
        recognizer.reset()
        start = time.perf_counter()
        for offset in range(0, len(wav), piece):
            recognizer.accept_waveform(wav[offset : offset + piece])
        hyp = recognizer.finalize()
        rows.append({"id": utt.id, "ref": utt.text, "hyp": hyp, "duration": len(wav) / sr,
                     "compute_s": time.perf_counter() - start})
    return rows


def summarize(rows: list[dict]) -> dict:
    audio = sum(r["duration"] for r in rows)
    return {"utterances": len(rows), "audio_s": audio, "rtf": sum(r["compute_s"] for r in rows) / audio}


def decode_system(cfg: DictConfig, system: str) -> None:
    stamp = StageStamp(cfg, f"decode/{system}", {"decode": cfg.decode, "test_sets": cfg.test_sets},
                       upstream=(_producer(cfg, system), "features"))
    if stamp.is_done():
        return
    paths = stamp.paths
    bundle = load_bundle(paths.checkpoint(system))
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.decode.threads)
    try:
        for test_set in cfg.test_sets:
            dataset = UtteranceDataset.from_exp(paths, test_set, bundle.cmvn, bundle.tokenizer)
            runs = {system: lambda: decode_offline(bundle, dataset)}
            if bundle.model.streaming and cfg.decode.streaming:
                runs[f"{system}_streaming"] = lambda: decode_streaming(bundle, dataset, cfg.decode.piece_ms)
            for name, decode in runs.items():
                rows = decode()
                summary = summarize(rows)
                write_jsonl(paths.decode(name, test_set), [*rows, {"summary": summary}])
                log.info("decode: %s on %s: RTF %.4f", name, test_set, summary["rtf"])
    finally:
        torch.set_num_threads(threads)
    stamp.done()


def _producer(cfg: DictConfig, system: str) -> str:
    return "teacher" if system == "teacher" else f"student/{system}"


def run(cfg: DictConfig) -> None:
    for system in ["teacher", *cfg.student_systems]:
        decode_system(cfg, system)
