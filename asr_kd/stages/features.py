"""Stage ``features``: manifests -> log-mel features of every split, and global CMVN from train.

Every split has features, the untranscribed ``unlabeled`` one too; CMVN comes from train alone.

Reads:  ``data/<split>.jsonl``.
Writes: ``features/<split>/{feats.f16,index.json}`` (asr_kd.features.store), ``features/cmvn.json``.
Run:    ``asr-kd stage=features [features=fbank|librosa]``

Audio decoding and feature computation run in ``features.num_workers`` loader processes; the
main process only writes. A split whose index carries the current fingerprint is not redone,
so a killed run resumes at the split it was on (``force=true`` redoes every split). An utterance
whose features are not finite (NaN or inf audio) stops the stage with its id: nothing is written.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from asr_kd.config import instantiate, to_dict
from asr_kd.data.audio import load_audio
from asr_kd.data.manifest import Utterance, audio_sha, read_manifest
from asr_kd.errors import DataError
from asr_kd.features.cmvn import CMVNAccumulator
from asr_kd.features.frontend import LogMelFrontend
from asr_kd.features.store import FeatureWriter
from asr_kd.stages.base import StageStamp
from asr_kd.utils import read_json

log = logging.getLogger(__name__)


class _FeatureJobs(Dataset):
    """Worker-side job: read audio, hash it, compute features."""

    def __init__(self, utts: list[Utterance], frontend: LogMelFrontend):
        self.utts, self.frontend = utts, frontend

    def __len__(self) -> int:
        return len(self.utts)

    def __getitem__(self, i: int) -> tuple[str, np.ndarray, str, float]:
        utt = self.utts[i]
        wav = load_audio(utt.audio, self.frontend.sample_rate, utt.start, utt.end)
        feats = self.frontend(wav).numpy()
        return utt.id, feats, audio_sha(utt), len(wav) / self.frontend.sample_rate


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)


def _as_is(item):
    """Keep worker results as NumPy (the default would convert them to tensors)."""
    return item


def extract_split(
    utts: list[Utterance], frontend: LogMelFrontend, folder, num_workers: int, fp: str, desc: str
) -> CMVNAccumulator:
    """Write one split's store; returns its CMVN statistics."""
    writer = FeatureWriter(folder, frontend.num_mel_bins, {**frontend.config(), "fingerprint": fp})
    stats = CMVNAccumulator(frontend.num_mel_bins)
    loader = DataLoader(
        _FeatureJobs(utts, frontend),
        batch_size=None,
        collate_fn=_as_is,
        num_workers=num_workers,
        worker_init_fn=_worker_init,
        prefetch_factor=16 if num_workers else None,
    )
    audio = {u.id: u.audio for u in utts}
    try:
        for utt_id, feats, sha, _ in tqdm(loader, total=len(utts), desc=desc, dynamic_ncols=True):
            if len(feats) == 0:
                raise DataError(f"{utt_id}: audio shorter than one analysis window")
            if not np.isfinite(feats).all():
                raise DataError(f"{utt_id} ({audio[utt_id]}): non-finite features (NaN or inf samples in its "
                                "audio?); fix or drop it from the manifest, then re-run stage=features")
            writer.add(utt_id, feats, sha)
            stats.update(feats)
    except BaseException:
        writer.abort()
        raise
    writer.close()
    return stats


def run(cfg: DictConfig) -> None:
    stamp = StageStamp(cfg, "features")
    if stamp.is_done():
        return
    paths = stamp.paths
    frontend: LogMelFrontend = instantiate(cfg.features.frontend, sample_rate=cfg.sample_rate)
    splits = sorted(p.stem for p in paths.data_dir.glob("*.jsonl") if p.stem != "rejects")
    info = {}
    for split in ["train", *[s for s in splits if s != "train"]]:
        folder = paths.features(split)
        index = folder / "index.json"
        done = index.exists() and read_json(index)["frontend"].get("fingerprint") == stamp.fingerprint
        if done and not stamp.force and (split != "train" or paths.cmvn.exists()):
            log.info("features: %s already extracted", split)
            continue
        utts = read_manifest(paths.manifest(split))
        stats = extract_split(utts, frontend, folder, cfg.features.num_workers, stamp.fingerprint, split)
        if split == "train":
            stats.finalize().save(paths.cmvn)
        info[split] = stats.count
    stamp.done({"frames": info, "frontend": to_dict(cfg.features.frontend)})
