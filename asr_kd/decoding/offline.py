"""Offline recognition of raw audio with any bundle: front end, CMVN, one forward, greedy CTC."""

from __future__ import annotations

import numpy as np
import torch

from asr_kd.config import instantiate
from asr_kd.features.frontend import LogMelFrontend
from asr_kd.models.bundle import Bundle
from asr_kd.models.ctc import ctc_greedy

__all__ = ["OfflineRecognizer", "bundle_frontend"]


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
