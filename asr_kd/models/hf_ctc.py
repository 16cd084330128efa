"""``teacher=hf_ctc``: a Hugging Face ``transformers`` ``*ForCTC`` model (wav2vec 2.0, HuBERT, WavLM...)
saved in a local directory (``save_pretrained``), named by ``teacher.checkpoint``.

The labels come from the directory's ``vocab.json`` (a ``Wav2Vec2CTCTokenizer``'s) or else its
config's ``id2label``; the blank is the config's ``pad_token_id``, the word delimiter the
tokenizer's ``word_delimiter_token`` (``|``). The input is normalised per utterance when the
directory's ``preprocessor_config.json`` says ``do_normalize`` (its default), at its
``sampling_rate`` (16 kHz by default). ``transformers`` is an optional dependency
(``pip install 'asr-kd[hf]'``), imported only when this teacher is built; it never reaches the
network (``local_files_only``). Weights are read from safetensors only: a directory holding just a
pickled ``pytorch_model.bin`` (which could run code when loaded) is refused.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from asr_kd.errors import ConfigError, MissingFileError, UnsafeFileError
from asr_kd.models.adapters import TeacherLabels, WaveformTeacher
from asr_kd.utils import path_hash

__all__ = ["HFCTC", "model_labels"]


def _json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _folder(path: str | None) -> Path:
    if not path:
        raise ConfigError("teacher.checkpoint is not set: give the directory of the pretrained model "
                          "(written by save_pretrained), e.g. teacher.checkpoint=/path/model_dir")
    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise MissingFileError(f"teacher.checkpoint={path}: not a saved transformers model (no config.json); "
                               "give the directory written by save_pretrained")
    return folder


def model_labels(path: str) -> TeacherLabels:
    """The labels of the model saved in ``path`` (module docstring), read without loading it."""
    folder = _folder(path)
    config = _json(folder / "config.json")
    id2label = config.get("id2label") or {}
    vocab = _json(folder / "vocab.json") or {label: int(i) for i, label in id2label.items()}
    if vocab and all(isinstance(v, dict) for v in vocab.values()):  # multilingual: {lang: {label: id}}
        raise ConfigError(f"teacher.checkpoint={path}: vocab.json holds several languages; save the model "
                          "with one language's vocabulary")
    size = config.get("vocab_size")
    if not vocab or sorted(vocab.values()) != list(range(len(vocab))) or (size and size != len(vocab)):
        raise ConfigError(f"teacher.checkpoint={path}: no vocabulary of the model's {size} labels, with ids "
                          "0, 1, 2..., in vocab.json or config.json id2label")
    labels = tuple(sorted(vocab, key=vocab.__getitem__))
    delimiter = _json(folder / "tokenizer_config.json").get("word_delimiter_token", "|")
    return TeacherLabels(labels, blank=int(config.get("pad_token_id") or 0), word_delimiter=delimiter)


class HFCTC(WaveformTeacher):
    """The ``AutoModelForCTC`` saved in directory ``checkpoint`` (eval mode)."""

    def __init__(self, checkpoint: str):
        labels = model_labels(checkpoint)
        super().__init__(labels)
        try:
            from transformers import AutoModelForCTC
        except ImportError:
            raise ConfigError("teacher=hf_ctc needs the optional dependency transformers: "
                              "pip install 'asr-kd[hf]'") from None
        if not list(Path(checkpoint).glob("*.safetensors")):  # a pickled pytorch_model.bin could run code
            raise UnsafeFileError(f"teacher.checkpoint={checkpoint}: no model.safetensors; refusing to load "
                                  "pickled weights (.bin), which could run code: convert them to safetensors")
        self.model = AutoModelForCTC.from_pretrained(os.fspath(checkpoint), local_files_only=True,
                                                     use_safetensors=True).eval()
        head = self.model.config.vocab_size
        if head != len(labels.labels):
            raise ConfigError(f"teacher.checkpoint={checkpoint}: its CTC head has {head} outputs, its "
                              f"vocabulary {len(labels.labels)} labels")
        preprocessor = _json(Path(checkpoint) / "preprocessor_config.json")
        self.normalize = preprocessor.get("do_normalize", True)
        self.sample_rate = int(preprocessor.get("sampling_rate", 16000))
        self.frame_shift_ms = 1000 * self.model.config.inputs_to_logits_ratio / self.sample_rate
        self.architecture = f"transformers.{type(self.model).__name__}"
        self.config = {"model_type": self.model.config.model_type}
        self.sha = path_hash(checkpoint)

    def logits(self, wav: torch.Tensor) -> torch.Tensor:
        if self.normalize:  # Wav2Vec2FeatureExtractor's zero mean, unit variance
            wav = (wav - wav.mean()) / torch.sqrt(wav.var(unbiased=False) + 1e-7)
        return self.model(wav[None]).logits[0]
