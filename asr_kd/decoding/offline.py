"""Offline recognition with any bundle: of raw audio (front end, CMVN, one forward, greedy CTC), and
the scores of a stored utterance (:func:`emissions`) that test-set decoding and LM tuning search."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from asr_kd.config import instantiate
from asr_kd.data.dataset import UtteranceDataset
from asr_kd.features.frontend import LogMelFrontend
from asr_kd.models.adapters import TeacherAdapter
from asr_kd.models.bundle import Bundle
from asr_kd.models.ctc import ctc_greedy

__all__ = ["OfflineRecognizer", "bundle_frontend", "emissions", "greedy_search"]


def bundle_frontend(bundle: Bundle) -> LogMelFrontend:
    """The front end a bundle's model was trained on, rebuilt from the config stored beside it."""
    cfg = {k: v for k, v in bundle.frontend.items() if k not in ("backend", "fingerprint")}
    return instantiate({"_target_": f"asr_kd.features.frontend.{bundle.frontend['backend']}", **cfg})


class OfflineRecognizer:
    """Whole-utterance greedy CTC: ``OfflineRecognizer(bundle)(wav) -> text``; ``logits`` (T', V) after."""

    def __init__(self, bundle: Bundle):
        self.model, self.tokenizer, self.cmvn = bundle.model, bundle.tokenizer, bundle.cmvn
        self.frontend = bundle_frontend(bundle)
        self.sample_rate: int = self.frontend.sample_rate
        self.logits = torch.zeros(0, 0)
        self.token_ids: list[int] = []

    def __call__(self, wav: np.ndarray) -> str:
        """Text of mono float32 ``wav`` at ``sample_rate``."""
        with torch.inference_mode():
            feats = self.cmvn(self.frontend(wav)).unsqueeze(0)
            if feats.shape[1] == 0:  # shorter than one analysis window
                self.logits, self.token_ids = torch.zeros(0, 0), []
                return ""
            logits, lengths = self.model(feats, torch.tensor([feats.shape[1]]))
        self.logits = logits[0]
        self.token_ids = ctc_greedy(logits, lengths)[0]
        return self.tokenizer.decode(self.token_ids)


def greedy_search(bundle: Bundle) -> Callable[[torch.Tensor], str]:
    """Best path: ``(T, V)`` logits -> text."""
    return lambda logits: bundle.tokenizer.decode(ctc_greedy(logits[None], torch.tensor([len(logits)]))[0])


def emissions(bundle: Bundle | TeacherAdapter, dataset: UtteranceDataset, i: int) -> torch.Tensor:
    """``(T, V)`` scores of utterance ``i``: a bundle's logits from the stored features, or a pretrained
    teacher's log-posteriors from the input it reads (features or audio)."""
    if isinstance(bundle, TeacherAdapter):
        x, lengths = bundle.inputs(dataset, [i])
        log_probs, out_lengths = bundle.log_posteriors(x, lengths)
        return log_probs[0, : int(out_lengths[0])]
    feats = dataset[i]["feats"]
    logits, lengths = bundle.model(feats.unsqueeze(0), torch.tensor([len(feats)]))
    return logits[0, : int(lengths[0])]
