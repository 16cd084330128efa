"""Stage ``prepare``: corpus -> validated manifests and the vocabulary.

Reads:  the corpus named by the ``data`` config group (its importer; the synthetic one makes audio).
Writes: ``data/<split>.jsonl`` manifests, ``data/rejects.jsonl``, ``data/tokens.txt``.
Run:    ``asr-kd stage=prepare [data=NAME] [prepare.on_error=skip]``
"""

from __future__ import annotations

import logging

from omegaconf import DictConfig

from asr_kd.config import instantiate
from asr_kd.data.manifest import write_manifest
from asr_kd.data.tokenizer import CharTokenizer
from asr_kd.data.validate import summarize_rejects, validate_utterances, write_rejects
from asr_kd.stages.base import StageStamp

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> None:
    stamp = StageStamp(cfg, "prepare", {"data": cfg.data, "prepare": cfg.prepare})
    if stamp.is_done():
        return
    paths = stamp.paths
    splits = instantiate(cfg.data, work_dir=paths.data_dir)
    if "train" not in splits:
        raise ValueError(f"the {cfg.data._target_} importer gave no 'train' split (got {sorted(splits)})")
    all_rejects, counts = [], {}
    for split, utts in splits.items():
        kept, rejects = validate_utterances(
            utts,
            sample_rate=cfg.sample_rate,
            max_duration=cfg.prepare.max_duration,
            min_duration=cfg.prepare.min_duration,
            on_error=cfg.prepare.on_error,
        )
        if not kept:
            raise ValueError(f"split {split!r}: no usable utterance left ({len(rejects)} rejected)")
        all_rejects += [{**r, "split": split} for r in rejects]
        write_manifest(paths.manifest(split), kept)
        counts[split] = {"utterances": len(kept), "hours": sum(u.duration for u in kept) / 3600}
        log.info("prepare: %s: %d utterances, %.2f h", split, len(kept), counts[split]["hours"])
    write_rejects(paths.rejects, all_rejects)
    if all_rejects:
        log.warning("prepare: %s (listed in %s)", summarize_rejects(all_rejects), paths.rejects)
    tokenizer = CharTokenizer.from_texts(u.text for u in splits["train"])
    tokenizer.save(paths.tokens)
    stamp.done({"splits": counts, "rejected": len(all_rejects), "vocab_size": len(tokenizer)})
