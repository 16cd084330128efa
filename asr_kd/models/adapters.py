"""Teachers behind one interface: features or audio in; frame log-posteriors, frame rate and
vocabulary out. The cache and decode stages talk to a teacher only through :class:`TeacherAdapter`.

- :class:`BundleTeacher`: this project's bundles (``models/teacher/model.pt``, trained here or
  adopted with ``teacher.checkpoint=PATH``); reads the log-mel features.
- :class:`asr_kd.models.torchaudio_ctc.TorchaudioCTC`: a torchaudio wav2vec 2.0 / HuBERT / WavLM CTC
  model (``teacher=torchaudio_ctc``); reads the audio.
- :class:`asr_kd.models.hf_ctc.HFCTC`: a Hugging Face ``*ForCTC`` model in a local directory
  (``teacher=hf_ctc``); reads the audio.

**Vocabulary bridge.** A pretrained teacher brings its labels, e.g. torchaudio's ``('-', '|', 'E',
'T', ...)``. The student adopts them (``tokenizer=teacher``, which the pretrained teacher options
select), so both share token ids, through this character map (:func:`map_labels`):

- the teacher's blank becomes ``<blk>`` and moves to index 0 if it is elsewhere (the posteriors'
  columns move with it: every model here has blank 0);
- the word delimiter (``|``) becomes the space;
- every other single-character label is lower-cased (``E`` -> ``e``), the case of normalised
  transcripts (asr_kd.scoring.text); labels of several characters (``<unk>``, ``<s>``) stay as
  they are: no transcript spells them.

Transcripts are normalised once, at prepare, as for every teacher; one holding a character the
teacher cannot spell (``data.on_error``) is rejected, or skipped, like any out-of-vocabulary one.
Two labels that map onto one token are refused (a config error naming them).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from omegaconf import DictConfig

from asr_kd.config import instantiate
from asr_kd.data.audio import load_audio
from asr_kd.data.dataset import UtteranceDataset
from asr_kd.data.tokenizer import BLANK, CharTokenizer, Tokenizer
from asr_kd.data.vocabulary import tokenizer_from_tokens
from asr_kd.errors import ConfigError
from asr_kd.models.bundle import Bundle, count_parameters, load_bundle
from asr_kd.paths import ExpPaths

__all__ = ["TeacherLabels", "TeacherAdapter", "BundleTeacher", "WaveformTeacher", "map_labels",
           "teacher_tokenizer", "load_teacher", "is_pretrained"]


@dataclass(frozen=True)
class TeacherLabels:
    """A pretrained teacher's output labels as it names them: ``blank`` index, word delimiter."""

    labels: tuple[str, ...]
    blank: int = 0
    word_delimiter: str | None = "|"


def map_labels(labels: TeacherLabels) -> tuple[list[str], list[int]]:
    """The student's tokens for ``labels`` (module docstring's character map) and, for each token,
    the teacher's column it reads (``order``: the blank first)."""
    order = [labels.blank, *(i for i in range(len(labels.labels)) if i != labels.blank)]
    tokens: dict[str, str] = {}  # token -> the label it came from
    for i in order:
        label = labels.labels[i]
        if i == labels.blank:
            token = BLANK
        elif label == labels.word_delimiter:
            token = " "
        else:
            token = label.lower() if len(label) == 1 else label
        if token in tokens:
            raise ConfigError(f"teacher labels {tokens[token]!r} and {label!r} both map to the token "
                              f"{token!r}; such a teacher needs its own vocabulary map")
        tokens[token] = label
    return list(tokens), order


def teacher_tokenizer(texts, labels: TeacherLabels | None) -> Tokenizer:
    """``tokenizer=teacher``: the pretrained teacher's labels, mapped (texts are not read)."""
    if labels is None:
        raise ConfigError("tokenizer=teacher needs a pretrained teacher (teacher=torchaudio_ctc or "
                          "teacher=hf_ctc); the Conformer teacher learns the corpus's own vocabulary")
    return CharTokenizer(map_labels(labels)[0])


class TeacherAdapter(ABC):
    """A teacher as the cache and decode stages see it.

    ``input``: ``"features"`` (normalised log-mel frames) or ``"waveform"`` (mono samples at
    ``sample_rate``); ``frame_shift_ms``: time between its output frames; ``tokens``: its
    vocabulary in the student's alphabet (index 0 the blank); ``architecture``, ``config`` (what
    builds it, its weights aside) and ``sha`` (of its weights' file): what the report and the cache
    metadata record of it (``describe()``); ``model``: the ``nn.Module`` that holds its weights.
    """

    model: torch.nn.Module
    input: str
    sample_rate: int
    frame_shift_ms: float
    tokens: list[str]
    architecture: str
    sha: str
    config: dict
    streaming = False

    @abstractmethod
    def log_posteriors(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, T, F)`` features or ``(B, N)`` samples, ``(B,)`` lengths -> ``(B, T', V)`` log-posteriors
        over :attr:`tokens` and ``(B,)`` frame counts."""

    @abstractmethod
    def inputs(self, dataset: UtteranceDataset, items: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """The padded input batch of ``dataset``'s utterances ``items`` and their lengths."""

    def to(self, device: torch.device | str) -> TeacherAdapter:
        self.model.to(device)
        return self

    @property
    def tokenizer(self) -> Tokenizer:
        return tokenizer_from_tokens(self.tokens)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def describe(self) -> dict:
        """Architecture, file hash, input, frame rate and vocabulary (report, cache metadata)."""
        return {"architecture": self.architecture, "sha": self.sha, "input": self.input,
                "sample_rate": self.sample_rate, "frame_shift_ms": self.frame_shift_ms,
                "vocabulary": self.tokens, "params": count_parameters(self.model), "config": self.config}


class BundleTeacher(TeacherAdapter):
    """This project's bundle: the stored features, normalised by the bundle's own CMVN; ``bundle.model``."""

    input = "features"

    def __init__(self, bundle: Bundle):
        self.bundle, self.model = bundle, bundle.model
        self.sample_rate = int(bundle.frontend.get("sample_rate", 16000))
        self.frame_shift_ms = bundle.frontend["frame_shift_ms"] * bundle.model.subsampling_factor
        self.tokens = bundle.tokenizer.tokens
        self.architecture = bundle.model_config["_target_"]
        self.sha, self.config = bundle.sha, bundle.model_config

    def log_posteriors(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, out_lengths = self.model(x, lengths)
        return logits.float().log_softmax(-1), out_lengths

    def inputs(self, dataset: UtteranceDataset, items: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        feats = [self.bundle.cmvn(torch.from_numpy(dataset.store[dataset.utts[i].id])) for i in items]
        return torch.nn.utils.rnn.pad_sequence(feats, batch_first=True), torch.tensor([len(f) for f in feats])


class WaveformTeacher(TeacherAdapter):
    """Base of the pretrained teachers that read audio. Each utterance runs alone: the group-normalised
    convolutional front ends of wav2vec 2.0 base models would otherwise see the batch's padding."""

    input = "waveform"

    def __init__(self, labels: TeacherLabels):
        self.tokens, order = map_labels(labels)
        self.order = torch.tensor(order)

    @abstractmethod
    def logits(self, wav: torch.Tensor) -> torch.Tensor:
        """``(N,)`` samples -> ``(T, V)`` logits in the teacher's own label order."""

    def log_posteriors(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rows = [self.logits(wav[:n]).float().log_softmax(-1)[:, self.order.to(x.device)]
                for wav, n in zip(x, lengths.tolist(), strict=True)]
        out_lengths = torch.tensor([len(r) for r in rows])
        return torch.nn.utils.rnn.pad_sequence(rows, batch_first=True), out_lengths

    def inputs(self, dataset: UtteranceDataset, items: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        wavs = [torch.from_numpy(load_audio(u.audio, self.sample_rate, u.start, u.end))
                for u in (dataset.utts[i] for i in items)]
        return torch.nn.utils.rnn.pad_sequence(wavs, batch_first=True), torch.tensor([len(w) for w in wavs])


def is_pretrained(teacher: DictConfig) -> bool:
    """Whether the ``teacher`` config node names a pretrained model (it has an ``adapter``)."""
    return teacher.get("adapter") is not None


def load_teacher(teacher: DictConfig, paths: ExpPaths) -> TeacherAdapter:
    """The run's teacher: the pretrained model its ``teacher.adapter`` names (weights from
    ``teacher.checkpoint``), else the bundle at ``models/teacher/model.pt``."""
    if not is_pretrained(teacher):
        return BundleTeacher(load_bundle(paths.checkpoint("teacher")))
    if not teacher.get("checkpoint"):
        raise ConfigError(f"teacher.checkpoint is not set: give the local weights of the pretrained teacher "
                          f"({teacher.adapter._target_.rsplit('.', 1)[-1]}), e.g. "
                          "teacher.checkpoint=/path/model.pt")
    return instantiate(teacher.adapter, _where_="teacher.adapter")

