"""Corpus importers: one small module per corpus format, each a plain function the ``data`` config names.

Every importer has the form ``import_NAME(work_dir: Path, **settings) -> dict[str, list[Utterance]]``
(split name -> utterances with absolute audio paths, span durations in seconds, normalised text
(``None`` in the ``unlabeled`` split: untranscribed audio, whose transcripts are never read),
speaker (``None`` when the corpus names none), and ``source``: the ``file:line`` it came from).
Two kinds of bad input:

- the corpus's *format* is wrong (a missing folder or list, a malformed line, a bad number, a piped
  ``wav.scp`` command): ``ValueError`` / ``FileNotFoundError`` naming the file and line, always;
- one *utterance* is bad (its audio missing or broken, its transcript empty, not UTF-8 or in another
  script, its id repeated): the importer passes it on as it is, and :mod:`asr_kd.data.validate`
  rejects it with a reason, which the prepare stage raises or, with ``data.on_error=skip``, lists.
  So lines are decoded with U+FFFD for bytes that are not UTF-8, and a transcript whose
  normalisation would drop letters is kept unnormalised, rather than training on half of it; so
  is one with digits or ``%&+$£``, which validation spells out or rejects after ``data.numbers``.

- :func:`.librispeech.import_librispeech`: ``SUBSET/SPK/CHAPTER/*.flac`` + ``*.trans.txt``
- :func:`.ljspeech.import_ljspeech`: ``metadata.csv`` + ``wavs/``; held-out dev/test
- :func:`.kaldi.import_kaldi`: Kaldi data dirs (``wav.scp``, ``text``, ``utt2spk``, ``segments``)
- :func:`.manifest.import_manifest`: generic JSONL / CSV / TSV manifests
- :func:`.lhotse_io.import_lhotse`: Lhotse CutSet, RecordingSet + SupervisionSet, or Shar (``data=shar``)
  (and :func:`.lhotse_io.export_lhotse` to write ours as a CutSet)
- :func:`.fsdd.import_fsdd`: connected digit strings built from the Free Spoken
  Digit Dataset (writes its audio under ``work_dir``)
- :func:`.untranscribed.read_untranscribed`: the untranscribed audio of ``data.unlabeled`` (folders
  of audio files, or the Kaldi, manifest and Lhotse readers above without texts), for any corpus

Shared helpers live in :mod:`asr_kd.data.importers._common`.
"""
