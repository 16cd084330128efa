"""``teacher=torchaudio_ctc``: a torchaudio wav2vec 2.0 / HuBERT / WavLM CTC model as the teacher.

The architecture and the labels come from a ``torchaudio.pipelines`` ASR bundle named by
``teacher.bundle`` (``WAV2VEC2_ASR_BASE_960H``, ``HUBERT_ASR_LARGE``...); the weights from
``teacher.checkpoint``, a local file holding the model's ``state_dict()`` (e.g. ``torch.save(
bundle.get_model().state_dict(), "model.pt")`` once, on a machine with network). Nothing is ever
downloaded here. Every use of torchaudio's wav2vec 2.0 code is in this module.
"""

from __future__ import annotations

import math
import os

import torch
import torchaudio
from torchaudio.models import wav2vec2_model, wavlm_model

from asr_kd.errors import ConfigError, MissingFileError, UserError
from asr_kd.integrity import load_torch
from asr_kd.models.adapters import TeacherLabels, WaveformTeacher
from asr_kd.utils import path_hash

__all__ = ["TorchaudioCTC", "bundle_labels", "asr_bundles"]

_BUILDERS = {"Wav2Vec2": wav2vec2_model, "WavLM": wavlm_model}
#: torchaudio's default feature encoder: (channels, kernel, stride) of its 7 convolutions.
_DEFAULT_CONV = [(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2


def asr_bundles() -> list[str]:
    """The names of the ``torchaudio.pipelines`` bundles that are CTC models with labels."""
    return sorted(n for n in dir(torchaudio.pipelines)
                  if hasattr(getattr(torchaudio.pipelines, n), "get_labels") and n.isupper())


def _bundle(name: str):
    if name not in asr_bundles():
        raise ConfigError(f"teacher.bundle={name}: not a torchaudio ASR bundle; one of "
                          f"{', '.join(asr_bundles())}")
    return getattr(torchaudio.pipelines, name)


def bundle_labels(bundle: str) -> TeacherLabels:
    """The labels of torchaudio bundle ``bundle`` (blank ``-`` first, ``|`` between words)."""
    return TeacherLabels(tuple(_bundle(bundle).get_labels()), blank=0, word_delimiter="|")


def _state_dict(path: str) -> dict:
    """The ``state_dict`` saved at ``path`` (or under its ``"state_dict"`` key), without the ``model.``
    prefix torchaudio's input-normalising wrapper adds."""
    if not os.path.isfile(path):
        raise MissingFileError(f"teacher.checkpoint={path}: no such file")
    state = load_torch(path, "check teacher.checkpoint")
    state = state.get("state_dict", state)
    if state and all(k.startswith("model.") for k in state):
        state = {k[len("model."):]: v for k, v in state.items()}
    return state


class TorchaudioCTC(WaveformTeacher):
    """The model of torchaudio bundle ``bundle`` with the weights of ``checkpoint`` (eval mode)."""

    def __init__(self, bundle: str, checkpoint: str):
        spec = _bundle(bundle)
        labels = bundle_labels(bundle)
        super().__init__(labels)
        params = dict(spec._params)
        self.model = _BUILDERS[spec._model_type](**params)
        state, ours = _state_dict(checkpoint), self.model.state_dict()
        wrong = sorted(ours.keys() ^ state.keys()) + sorted(
            k for k in ours.keys() & state.keys() if ours[k].shape != state[k].shape)
        if wrong:
            raise UserError(f"teacher.checkpoint={checkpoint} does not hold {bundle}'s weights: {len(wrong)} "
                            f"parameters missing, unexpected or of another shape (e.g. {wrong[0]})")
        self.model.load_state_dict(state)
        head = self.model.aux.out_features if self.model.aux is not None else None
        if head != len(labels.labels):
            raise UserError(f"teacher.checkpoint={checkpoint}: its CTC head has {head} outputs, {bundle} "
                            f"has {len(labels.labels)} labels")
        self.model.eval()
        self.normalize_waveform = spec._normalize_waveform
        self.sample_rate = int(spec.sample_rate)
        stride = math.prod(s for _, _, s in params.get("extractor_conv_layer_config") or _DEFAULT_CONV)
        self.frame_shift_ms = 1000 * stride / self.sample_rate
        self.architecture, self.config = f"torchaudio.pipelines.{bundle}", {"bundle": bundle}
        self.sha = path_hash(checkpoint)

    def logits(self, wav: torch.Tensor) -> torch.Tensor:
        if self.normalize_waveform:  # as torchaudio's wrapper of the large models does
            wav = torch.nn.functional.layer_norm(wav, wav.shape)
        return self.model(wav[None])[0][0]
