"""Stage ``prepare``: corpus -> validated manifests and the vocabulary.

Reads:  the corpus named by the ``data`` config group (its importer; the synthetic one makes audio),
        and the untranscribed audio that ``data.unlabeled`` lists.
Writes: ``data/<split>.jsonl`` manifests, ``data/rejects.jsonl``, ``data/tokens.txt``,
        ``data/views.json`` (the views of each training split); with ``data.speed_perturb`` or
        ``data.noise``, augmented copies of the training audio under ``data/audio/{sp<factor>,nz<n>}/``.
Run:    ``asr-kd stage=prepare [data=NAME] [data.on_error=skip] [tokenizer=bpe] [data.unlabeled=[DIR,...]]``

Untranscribed audio is the ``unlabeled`` split (``data/unlabeled.jsonl``, texts ``null``): what the
importer gives for it (the synthetic corpus makes one; Kaldi, manifest and Lhotse take an
``unlabeled`` entry without texts) plus every path of ``data.unlabeled`` (folders of audio, Kaldi
directories, manifests, Lhotse cuts: :mod:`asr_kd.data.importers.untranscribed`). It passes the
same audio checks as the other splits and no text check; transcripts that come with it are ignored.

Every utterance is validated (:mod:`asr_kd.data.validate`), and one whose transcript the vocabulary
learned from train cannot spell (a character no train transcript holds) is rejected too; with
``tokenizer=teacher`` the vocabulary is a pretrained teacher's labels (asr_kd.models.adapters), and
a transcript with a character the teacher cannot spell is rejected the same way. With
``data.on_error=raise`` (the default) the first bad utterance stops the stage with a message naming
the source file and line, the utterance, its audio and the reason; with ``data.on_error=skip`` bad
utterances are left out, listed with their reasons in ``data/rejects.jsonl``, and counted in the
log. Nothing is written before every split has passed, so a failed run leaves the previous outputs
as they were. Transcripts with digits or symbols read as words ("911", "50%", "&") are spelled out
(:mod:`asr_kd.scoring.text`) with ``data.numbers=spell`` (the default), or rejected as bad
utterances with ``data.numbers=reject``.

The corpus is also checked as a whole: an utterance id, or audio of the same content (a hash of the
decoded samples of each file or segment), in two splits is leakage between splits and always stops
the stage, even with ``data.on_error=skip``, naming both source lines: it is a bug of the corpus
(how it was split), not a bad utterance to drop, and dropping one copy by guess would hide it.

``data.speed_perturb`` adds, for each factor other than 1, a resampled copy of every utterance of
the training splits (``train``, ``unlabeled``; id ``<id>_sp0.9``), and ``data.noise`` noisy copies
(``<id>_nz1``...; asr_kd.data.views), which later stages treat as utterances like any other; the
copies are made after the checks, so they never count as leakage. Every system trains on them.
A manifest of a split that the corpus no longer has (an ``unlabeled.jsonl`` of an earlier run) is
removed.

The stamp (``stamps/prepare.json``) records ``corpus_sha``, a hash of every split's manifest and
audio bytes (:func:`asr_kd.data.manifest.corpus_hash`), which the report's provenance shows.
"""

from __future__ import annotations

import logging

from omegaconf import DictConfig

from asr_kd.config import instantiate, to_dict
from asr_kd.data.importers.untranscribed import read_untranscribed
from asr_kd.data.manifest import UNLABELED, Utterance, corpus_hash, write_manifest
from asr_kd.data.tokenizer import Tokenizer
from asr_kd.data.validate import describe, reject, summarize_rejects, validate_corpus, write_rejects
from asr_kd.data.views import VIEW_SPLITS, make_views, view_settings
from asr_kd.errors import ConfigError, DataError
from asr_kd.stages.base import StageStamp
from asr_kd.utils import write_json

log = logging.getLogger(__name__)

#: Keys of the ``data`` node read by this stage (conf/config.yaml); the others are the importer's arguments.
PREPARE_KEYS = ("on_error", "max_duration", "min_duration", "numbers", "speed_perturb", "noise", "unlabeled")


def run(cfg: DictConfig) -> None:
    stamp = StageStamp(cfg, "prepare")
    if stamp.is_done():
        return
    paths = stamp.paths
    data = to_dict(cfg.data)
    on_error = data["on_error"]
    if on_error not in ("raise", "skip"):
        raise ConfigError(f"data.on_error must be 'raise' or 'skip', got {on_error!r}")
    views = view_settings(data)
    importer = {k: v for k, v in data.items() if k not in PREPARE_KEYS}
    splits = instantiate(importer, "data", work_dir=paths.data_dir)
    if "train" not in splits:
        raise DataError(f"the {importer['_target_']} importer gave no 'train' split (got {sorted(splits)})")
    extra = read_untranscribed(data["unlabeled"] or [])
    if extra:
        splits[UNLABELED] = [*splits.get(UNLABELED, []), *extra]

    kept, rejects = validate_corpus(
        splits,
        max_duration=data["max_duration"],
        min_duration=data["min_duration"],
        on_error=on_error,
        numbers=data["numbers"],
    )
    _check_not_empty(kept, rejects)
    tokenizer = instantiate(cfg.tokenizer, _partial_=True)(u.text for u in kept["train"])
    for split in [s for s in kept if s != UNLABELED]:
        kept[split], bad = _spellable(kept[split], tokenizer, on_error)
        rejects += [{"split": split, **r} for r in bad]
    _check_not_empty(kept, rejects)
    for split in (s for s in VIEW_SPLITS if s in kept):
        kept[split] += make_views(kept[split], views, paths.data_dir / "audio", cfg.sample_rate)

    stamp.undo()  # outputs are about to change: not done until all are
    for split, utts in kept.items():
        write_manifest(paths.manifest(split), utts)
    for stale in paths.data_dir.glob("*.jsonl"):
        if stale.stem not in kept and stale != paths.rejects:
            stale.unlink()
    write_rejects(paths.rejects, rejects)
    tokenizer.save(paths.tokens)
    write_json(paths.views, {split: views for split in VIEW_SPLITS if split in kept})
    counts = {
        split: {"utterances": len(u), "hours": sum(x.duration for x in u) / 3600} for split, u in kept.items()
    }
    for split, c in counts.items():
        n = sum(r["split"] == split for r in rejects)
        log.info("prepare: %s: %d utterances, %.2f h, %d rejected", split, c["utterances"], c["hours"], n)
    log.info("prepare: %s token vocabulary of %d", type(tokenizer).__name__, len(tokenizer))
    corpus = corpus_hash(kept)
    log.info("prepare: corpus hash %s", corpus)
    if rejects:
        log.warning("prepare: %s (listed in %s)", summarize_rejects(rejects), paths.rejects)
    stamp.done({"splits": counts, "rejected": len(rejects), "vocab_size": len(tokenizer),
                "corpus_sha": corpus})


def _check_not_empty(kept: dict[str, list[Utterance]], rejects: list[dict]) -> None:
    for split, utts in kept.items():
        if not utts:
            bad = [r for r in rejects if r["split"] == split]
            raise DataError(f"split {split!r}: no usable utterance left ({summarize_rejects(bad)})")


def _spellable(
    utts: list[Utterance], tokenizer: Tokenizer, on_error: str
) -> tuple[list[Utterance], list]:
    """Utterances whose transcript the vocabulary can encode, and reject records for the others."""
    good, bad = [], []
    for utt in utts:
        try:
            tokenizer.encode(utt.text)
        except KeyError as e:
            record = reject(utt, f"out of vocabulary: {e.args[0]} (the tokenizer's: learned from the train "
                                 "transcripts, or the pretrained teacher's labels with tokenizer=teacher)")
            if on_error == "raise":
                raise DataError(describe(record)) from None
            bad.append(record)
        else:
            good.append(utt)
    return good, bad

