"""Checkpoint bundles: a model together with everything needed to use it on raw audio.

``model.pt`` holds ``{"model_config": {_target_...}, "state_dict", "tokens": [...],
"frontend": {...}, "cmvn": {...}, "meta": {...}}``, so ``teacher.checkpoint=PATH`` (or a phone
app) needs nothing else: the config travels with the weights, as in WeNet. It is plain data
(tensors, numbers, strings, lists, dicts), loaded with ``weights_only=True`` and checked against
its ``model.pt.sha256`` (asr_kd.integrity): a file that would run code on loading is refused.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

from asr_kd.config import instantiate
from asr_kd.data.tokenizer import Tokenizer
from asr_kd.data.vocabulary import tokenizer_from_tokens
from asr_kd.features.cmvn import GlobalCMVN
from asr_kd.integrity import checksummed, load_torch
from asr_kd.utils import file_hash

__all__ = ["Bundle", "save_bundle", "load_bundle", "count_parameters"]


@dataclass
class Bundle:
    """A loaded model with its tokenizer, front-end config and CMVN."""

    model: nn.Module
    tokenizer: Tokenizer
    frontend: dict
    cmvn: GlobalCMVN
    model_config: dict
    sha: str
    meta: dict

    @property
    def streaming(self) -> bool:
        return bool(self.model.streaming)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def save_bundle(
    path: str | os.PathLike,
    model: nn.Module,
    model_config: dict,
    tokenizer: Tokenizer,
    frontend: dict,
    cmvn: GlobalCMVN,
    meta: dict | None = None,
) -> None:
    """Write the bundle atomically (see module docstring)."""
    model = getattr(model, "module", model)  # unwrap DDP
    payload = {
        "model_config": model_config,
        "state_dict": model.state_dict(),
        "tokens": tokenizer.tokens,
        "frontend": frontend,
        "cmvn": cmvn.to_dict(),
        "meta": meta or {},
    }
    with checksummed(path) as tmp:
        torch.save(payload, tmp)


def load_bundle(path: str | os.PathLike, map_location: str = "cpu",
                rerun: str = "re-run the stage that wrote it with force=true") -> Bundle:
    """Rebuild the model from the config stored beside its weights; eval mode. ``rerun``: what the
    error of a corrupt file tells the user to do."""
    payload = load_torch(path, rerun, map_location)
    tokenizer = tokenizer_from_tokens(payload["tokens"])
    model = instantiate(payload["model_config"], vocab_size=len(tokenizer))
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return Bundle(
        model=model,
        tokenizer=tokenizer,
        frontend=payload["frontend"],
        cmvn=GlobalCMVN.from_dict(payload["cmvn"]),
        model_config=payload["model_config"],
        sha=file_hash(path),
        meta=payload.get("meta", {}),
    )
