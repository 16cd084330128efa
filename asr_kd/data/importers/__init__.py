"""Corpus importers: one small module per corpus format, each a plain function the ``data`` config names.

Every importer has the form ``import_NAME(work_dir: Path, **settings) -> dict[str, list[Utterance]]``
(split name -> utterances with absolute audio paths, span durations in seconds, normalised text and
speaker). Structural problems (missing files, malformed lines, invalid UTF-8) raise ``ValueError`` or
``FileNotFoundError`` naming the file and line; audio content is checked later by
:mod:`asr_kd.data.validate`. A transcript whose normalisation would drop letters (non-Latin script...)
is passed on unnormalised so that validation rejects it with a reason instead of training on half of it.

- :func:`~asr_kd.data.importers.librispeech.import_librispeech`: ``SUBSET/SPK/CHAPTER/*.flac`` + ``*.trans.txt``
- :func:`~asr_kd.data.importers.ljspeech.import_ljspeech`: ``metadata.csv`` + ``wavs/``; held-out dev/test
- :func:`~asr_kd.data.importers.kaldi.import_kaldi`: Kaldi data dirs (``wav.scp``, ``text``, ``segments``...)
- :func:`~asr_kd.data.importers.manifest.import_manifest`: generic JSONL / CSV / TSV manifests
- :func:`~asr_kd.data.importers.lhotse_io.import_lhotse`: Lhotse CutSet, or RecordingSet + SupervisionSet
  (and :func:`~asr_kd.data.importers.lhotse_io.export_lhotse` to write ours as a CutSet)
- :func:`~asr_kd.data.importers.fsdd.import_fsdd`: connected digit strings built from the Free Spoken
  Digit Dataset (writes its audio under ``work_dir``)

Shared helpers live in :mod:`asr_kd.data.importers._common`.
"""
