"""Every artefact's location inside the experiment directory, described once.

Stages talk to each other only through these files::

    <exp_dir>/
      data/<split>.jsonl            manifests (asr_kd.data.manifest), data/rejects.jsonl;
                                    data/unlabeled.jsonl: untranscribed audio (texts null)
      data/tokens.txt               the vocabulary, one token per line (index = line number)
      data/views.json               the augmented views of each training split (asr_kd.data.views)
      data/audio/{sp<f>,nz<n>}/     their audio: speed-perturbed and noisy copies (FLAC)
      features/<split>/feats.f16    log-mel frames, float16, (total_frames, F), memory-mapped
      features/<split>/index.json   per utterance: offset, frames, audio hash (asr_kd.features.store)
      features/cmvn.json            global CMVN statistics estimated on train
      models/<system>/model.pt      checkpoint with its config, vocabulary and front end (a bundle)
                                    (none for a pretrained teacher: teacher=torchaudio_ctc|hf_ctc)
      models/teacher/teacher.json   what the teacher is: architecture, file hash, input, frame shift,
                                    vocabulary (asr_kd.models.adapters)
      models/<system>/train_log.jsonl, models/<system>/tb/   metrics, TensorBoard events
      models/<system>/ckpt-<step>.pt  resumable training checkpoints (deleted when training completes)
      models/teacher_fold<i>of<K>/  cross-fitting teachers, each trained on train minus fold i (stage
                                    teacher, only when a cache asks for them; asr_kd.stages.plan)
      models/folds<K>.json          the fold of each train clip and its views (asr_kd.data.folds)
      cache/<name>/<split>/         teacher posterior caches, one per setting (format: asr_kd.distill.cache;
                                    teachers, metadata, opening: asr_kd.distill.teacher_cache)
      decode/<system>/<set>.jsonl   per-utterance hypotheses, references and timings; <system> is also
                                    <system>_streaming, <system>_lm (stage decode) and <system>_sherpa,
                                    <system>_sherpa_int8 (stage export: the exported fp32 and int8
                                    graphs through sherpa-onnx; <system>_onnx, <system>_int8 for the
                                    Emformer), whose summary adds size_mb and peak_rss_mb
      decode/<system>/<set>.align.txt   each utterance's alignment (asr_kd.scoring.wer)
      decode/lm/lexicon.txt, lm.arpa   word lexicon and n-gram LM of the train transcripts (decode.lm)
      report.json, report.md, report.png, report_pareto.png, report_curves.png (asr_kd.scoring.report)
      export/<system>/              ONNX graphs, tokens.txt, meta.json (asr_kd.export.onnx)
      compare.json, compare.md      aggregate of several runs' reports (asr_kd.scoring.aggregate)
      run.lock                      held by the run working here, naming it (asr_kd.lock)
      stamps/<unit>.json            fingerprint and settings of each finished unit of work
                                    (asr_kd.stages.base; units in asr_kd.stages.plan)
      <file>.sha256                 beside every models/<system>/model.pt, ckpt-<step>.pt and
                                    features/<split>/{feats.f16,index.json}: the file's SHA-256 in
                                    sha256sum format, checked before the file is used (asr_kd.integrity)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from asr_kd.errors import DataError

__all__ = ["ExpPaths", "inside"]


@dataclass(frozen=True)
class ExpPaths:
    """Paths of one experiment directory (see module docstring for the layout)."""

    root: Path

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def manifest(self, split: str) -> Path:
        return self.data_dir / f"{split}.jsonl"

    @property
    def rejects(self) -> Path:
        return self.data_dir / "rejects.jsonl"

    @property
    def tokens(self) -> Path:
        return self.data_dir / "tokens.txt"

    @property
    def views(self) -> Path:
        return self.data_dir / "views.json"

    @property
    def features_dir(self) -> Path:
        return self.root / "features"

    def features(self, split: str) -> Path:
        return self.features_dir / split

    @property
    def cmvn(self) -> Path:
        return self.features_dir / "cmvn.json"

    def model_dir(self, system: str) -> Path:
        return self.root / "models" / system

    def checkpoint(self, system: str) -> Path:
        return self.model_dir(system) / "model.pt"

    def folds(self, k: int) -> Path:
        """The assignment of train clips to ``k`` cross-fitting folds."""
        return self.root / "models" / f"folds{k}.json"

    @property
    def teacher_info(self) -> Path:
        return self.model_dir("teacher") / "teacher.json"

    def cache_dir(self, name: str, split: str) -> Path:
        """Cache ``name`` (``teacher_k16``, see asr_kd.stages.plan) of ``split``."""
        return self.root / "cache" / name / split

    def decode(self, system: str, test_set: str) -> Path:
        return self.root / "decode" / system / f"{test_set}.jsonl"

    @property
    def lm_dir(self) -> Path:
        return self.root / "decode" / "lm"

    @property
    def report_json(self) -> Path:
        return self.root / "report.json"

    @property
    def report_md(self) -> Path:
        return self.root / "report.md"

    @property
    def report_png(self) -> Path:
        return self.root / "report.png"

    @property
    def report_pareto_png(self) -> Path:
        return self.root / "report_pareto.png"

    @property
    def report_curves_png(self) -> Path:
        return self.root / "report_curves.png"

    @property
    def target_json(self) -> Path:
        """The budget's outcome (asr_kd.scoring.target): every candidate and the winner."""
        return self.root / "target.json"

    def export_dir(self, system: str) -> Path:
        return self.root / "export" / system

    def stamp(self, stage: str) -> Path:
        return self.root / "stamps" / f"{stage}.json"


def inside(path: Path, root: Path) -> Path:
    """``path``, after checking that it resolves to a place under ``root`` (a name from a file or a
    setting never writes outside the experiment directory)."""
    if not path.resolve().is_relative_to(root.resolve()):
        raise DataError(f"{path}: refusing to write outside {root}")
    return path
