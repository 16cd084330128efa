"""Lhotse manifests in and out: a CutSet (or RecordingSet + SupervisionSet) <-> our utterances.

``lhotse`` (``pip install asr-kd[lhotse]``) is imported inside the functions, so the rest of the
package works without it. Only recordings with one ``file`` source and no transforms are supported
(piped commands, URLs and speed/volume perturbation are refused); relative source
paths resolve against the manifest's folder, and a missing file is left to validation. A cut becomes
one utterance (its span; the texts of its supervisions joined in time order); a lone supervision
becomes one utterance. A supervision's text is its ``custom["normalized_text"]`` where it has one
(Lhotse's LJSpeech recipe puts the normalised column there: "fourteen fifty-five" for "1455"), else
its ``text``; the field used is logged once per split. A supervision without a speaker gives an
utterance without one (``None``). In the ``unlabeled`` split (untranscribed audio) cuts need no
supervisions, texts are not read, and a RecordingSet may stand for cuts (one utterance per
recording). Multi-channel audio is mixed down to mono when read, whatever channel a cut names.

Lhotse Shar (``CutSet.to_shar(dir, fields={"recording": "flac"})``: ``cuts.NNNNNN.jsonl.gz`` and
``recording.NNNNNN.tar``, the data unit of NeMo and icefall at scale) is read with ``shar: {split: dir}``
(``data=shar``): each cut's audio is decoded once from its tar shard into
``work_dir/audio/shar/<split>/<cut id>.flac`` (the feature stage reads files), and its supervisions
give the text as above; cuts without supervisions are untranscribed audio (the ``unlabeled`` split).
To write an experiment's manifest as a CutSet::

    from asr_kd.data.importers.lhotse_io import export_lhotse
    from asr_kd.data.manifest import read_manifest
    export_lhotse(read_manifest("exp/fsdd/data/train.jsonl"), "train_cuts.jsonl.gz")
"""

from __future__ import annotations

import gzip
import json
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import soundfile as sf

from asr_kd.data.importers._common import audio_path, make_utterance
from asr_kd.data.manifest import UNLABELED, Utterance
from asr_kd.errors import ConfigError, DataError, MissingFileError
from asr_kd.utils import atomic_path, fingerprint

__all__ = ["import_lhotse", "read_cuts", "read_shar", "export_lhotse"]

log = logging.getLogger(__name__)

PathMap = Mapping[str, str | os.PathLike]
#: The ``custom`` field of a supervision preferred to its ``text`` (Lhotse's LJSpeech recipe fills it).
NORMALIZED_TEXT = "normalized_text"


def import_lhotse(
    work_dir: Path,
    cuts: PathMap | None = None,
    recordings: PathMap | None = None,
    supervisions: PathMap | None = None,
    shar: PathMap | None = None,
) -> dict[str, list[Utterance]]:
    """Utterances of each split from a CutSet file, a RecordingSet and a SupervisionSet file, or a
    Lhotse Shar directory.

    Give one of ``cuts: {split: path}``, ``shar: {split: dir}``, or both ``recordings`` and
    ``supervisions`` with the same splits.
    """
    if sum(bool(x) for x in (cuts, shar, recordings or supervisions)) > 1:
        raise ConfigError("import_lhotse: give one of cuts, shar, or recordings + supervisions")
    if shar:
        return {split: _logged(split, *read_shar(Path(folder), Path(work_dir) / "audio" / "shar" / split,
                                                 split != UNLABELED)) for split, folder in shar.items()}
    if cuts:
        return {
            split: _logged(split, *read_cuts(Path(path), split != UNLABELED)) for split, path in cuts.items()
        }
    if not recordings or not supervisions or set(recordings) != set(supervisions):
        raise ConfigError("import_lhotse: give cuts, or recordings and supervisions for the same splits")
    return {
        split: _logged(
            split, *_from_supervisions(Path(recordings[split]), Path(supervisions[split]), split != UNLABELED)
        )
        for split in recordings
    }


def _logged(split: str, utts: list[Utterance], fields: Counter) -> list[Utterance]:
    """``utts``, after logging which supervision field their transcripts came from."""
    if split != UNLABELED:
        used = ", ".join(f"{field} ({n} supervisions)" for field, n in fields.most_common())
        log.info("import_lhotse: %s: transcripts from %s", split, used or "no supervision")
    return utts


def _text(sup: Any) -> tuple[str, str]:
    """A supervision's transcript and the field it came from (see the module docstring)."""
    normalized = (sup.custom or {}).get(NORMALIZED_TEXT)
    if isinstance(normalized, str) and normalized.strip():
        return normalized, f"custom[{NORMALIZED_TEXT!r}]"
    return sup.text or "", "text"


def _load(path: Path, loader: Callable[[Path], Any]) -> Any:
    """A Lhotse manifest read with ``loader``; failures become errors naming the file."""
    if not path.exists():
        raise MissingFileError(f"{path}: Lhotse manifest does not exist")
    try:
        return loader(path)
    except (ValueError, KeyError, TypeError, OSError, EOFError) as e:
        raise DataError(f"{path}: not a readable Lhotse manifest ({type(e).__name__}: {e})") from e


def read_cuts(path: Path, labelled: bool = True) -> tuple[list[Utterance], Counter]:
    """One utterance per cut: the cut's span and its supervisions' texts (a cut without any: empty text).

    ``labelled=False``: untranscribed audio, text ``None``; a RecordingSet gives one utterance per
    recording. Also returns how many supervisions gave their text from each field.
    """
    from lhotse import CutSet, Recording

    utts, fields = [], Counter()
    for lineno, cut in enumerate(_load(path, CutSet.from_file), 1):
        if isinstance(cut, Recording) and not labelled:
            recording, start, sups = cut, 0.0, []
        else:
            recording, start, sups = getattr(cut, "recording", None), cut.start, cut.supervisions
        if recording is None:
            raise DataError(f"{path}: cut {cut.id!r} ({type(cut).__name__}) has no single recording")
        text, speaker = _transcript(sups, labelled, fields)
        audio = _audio_file(recording, path)
        utts.append(
            _utterance(cut.id, audio, recording, start, cut.duration, text, speaker, f"{path}:{lineno}")
        )
    return utts, fields


def _transcript(sups: list, labelled: bool, fields: Counter) -> tuple[str | None, str | None]:
    """A cut's text (its supervisions' in time order; ``None`` when not ``labelled``) and speaker;
    counts the supervision fields used in ``fields``."""
    sups = sorted(sups, key=lambda s: s.start)
    texts = [_text(s) for s in sups] if labelled else []
    fields.update(field for _, field in texts)
    text = " ".join(t for t, _ in texts) if labelled else None
    return text, next((s.speaker for s in sups if s.speaker), None)


def read_shar(folder: Path, audio_dir: Path, labelled: bool = True) -> tuple[list[Utterance], Counter]:
    """One utterance per cut of the Lhotse Shar directory ``folder``, its audio decoded once into
    ``audio_dir/<cut id>.flac`` (kept across runs); and the text fields used (see :func:`read_cuts`)."""
    from lhotse import CutSet

    if not folder.is_dir() or not any(folder.glob("cuts.*")):
        raise MissingFileError(f"{folder}: not a Lhotse Shar directory (no cuts.NNNNNN.jsonl.gz; "
                               "write one with CutSet.to_shar)")
    audio_dir.mkdir(parents=True, exist_ok=True)
    utts, fields = [], Counter()
    for cut in _load(folder, lambda d: CutSet.from_shar(in_dir=d)):
        audio = audio_dir / f"{cut.id.replace('/', '_')}.flac"
        if not audio.exists():
            samples = cut.load_audio()  # (channels, samples) from the cut's tar shard
            with atomic_path(audio) as tmp:
                sf.write(tmp, samples.mean(0), cut.sampling_rate, format="FLAC")
        text, speaker = _transcript(cut.supervisions, labelled, fields)
        utts.append(make_utterance(cut.id, audio, text, speaker=speaker, duration=cut.duration,
                                   source=f"{folder}: cut {cut.id}"))
    return utts, fields


def _from_supervisions(
    recordings_path: Path, supervisions_path: Path, labelled: bool
) -> tuple[list[Utterance], Counter]:
    """One utterance per supervision segment, over its span of its recording; and the text fields used.

    ``labelled=False``: untranscribed audio; the supervisions give only spans and speakers.
    """
    from lhotse import RecordingSet, SupervisionSet

    recordings = {r.id: r for r in _load(recordings_path, RecordingSet.from_file)}
    audio: dict[str, Path] = {}
    utts, fields = [], Counter()
    for lineno, sup in enumerate(_load(supervisions_path, SupervisionSet.from_file), 1):
        rec = recordings.get(sup.recording_id)
        if rec is None:
            raise DataError(
                f"{supervisions_path}: supervision {sup.id!r} names recording {sup.recording_id!r}, "
                f"which {recordings_path} lacks"
            )
        if rec.id not in audio:
            audio[rec.id] = _audio_file(rec, recordings_path)
        where = f"{supervisions_path}:{lineno}"
        text = None
        if labelled:
            text, field = _text(sup)
            fields[field] += 1
        utts.append(_utterance(sup.id, audio[rec.id], rec, sup.start, sup.duration, text, sup.speaker, where))
    return utts, fields


def _audio_file(recording: Any, manifest: Path) -> Path:
    """The one audio file behind a Lhotse recording; other kinds of source are refused."""
    where = f"{manifest}: recording {recording.id!r}"
    if recording.transforms:
        raise DataError(f"{where} has audio transforms (speed/volume perturbation, resampling); drop them")
    kinds = [s.type for s in recording.sources]
    if kinds != ["file"]:
        raise DataError(f"{where} has source(s) of type {kinds}; only one 'file' source is supported")
    return audio_path(recording.sources[0].source, manifest.parent)


def _utterance(
    utt_id: str,
    audio: Path,
    recording: Any,
    start: float,
    duration: float,
    text: str | None,
    speaker: str | None,
    source: str,
) -> Utterance:
    """An utterance over ``[start, start + duration)`` of ``recording``.

    A span that runs to the end of the recording gets ``end=None`` ("to the end of the file"), as our
    manifests write it, so that export followed by import gives back the same utterances.
    """
    end = start + duration
    to_the_end = abs(end - recording.duration) < 1e-3
    return make_utterance(
        utt_id,
        audio,
        text,
        speaker=speaker,
        start=start,
        end=None if to_the_end else round(end, 6),
        duration=duration,
        source=source,
    )


def export_lhotse(utts: Iterable[Utterance], path: str | os.PathLike) -> None:
    """Write utterances as a Lhotse CutSet (``.jsonl.gz``, or ``.jsonl``), one MonoCut per utterance.

    Utterances sharing an audio file share a Recording. The file is written atomically and, gzipped,
    byte-identical for identical input (no timestamp in the gzip header).
    """
    from lhotse import MonoCut, SupervisionSegment

    path = Path(path)
    recordings: dict[str, Any] = {}
    rec_ids: set[str] = set()
    lines = []
    for u in utts:
        if u.audio not in recordings:
            recordings[u.audio] = _recording(u, taken=rec_ids)
            rec_ids.add(recordings[u.audio].id)
        rec = recordings[u.audio]
        sup = SupervisionSegment(
            id=u.id, recording_id=rec.id, start=0.0, duration=u.duration, text=u.text, speaker=u.speaker
        )
        cut = MonoCut(
            id=u.id, start=u.start, duration=u.duration, channel=0, recording=rec, supervisions=[sup]
        )
        lines.append(json.dumps(cut.to_dict(), ensure_ascii=False) + "\n")
    data = "".join(lines).encode("utf-8")
    with atomic_path(path) as tmp, open(tmp, "wb") as raw:
        if path.suffix == ".gz":
            with gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as gz:
                gz.write(data)
        else:
            raw.write(data)


def _recording(utt: Utterance, taken: set[str]) -> Any:
    """A Lhotse Recording of ``utt``'s audio file, read from its header; id = file stem (made unique)."""
    from lhotse import Recording
    from lhotse.audio import AudioSource

    if not os.path.isfile(utt.audio):
        raise MissingFileError(f"{utt.audio}: audio of utterance {utt.id!r} does not exist")
    info = sf.info(utt.audio)
    rec_id = Path(utt.audio).stem
    if rec_id in taken:
        rec_id = f"{rec_id}-{fingerprint(utt.audio)[:8]}"
    return Recording(
        id=rec_id,
        sources=[AudioSource(type="file", channels=list(range(info.channels)), source=utt.audio)],
        sampling_rate=info.samplerate,
        num_samples=info.frames,
        duration=info.frames / info.samplerate,
    )
