"""Throughput of the ``features`` stage per log-mel front end, in x real time per CPU core.

What one "utterance" costs is exactly what the stage does for it (``asr_kd.stages.features``):
decode the file with soundfile, resample it to 16 kHz, hash it, compute 80-dim log-mel
features, append them to the feature store (``FeatureWriter``) and to the CMVN statistics. Each
front end runs that path through the stage's own ``extract_split`` in one process with one torch
thread, so the figure is per core. Front ends compared (same files, same Kaldi framing):

* ``kaldi_fbank``   ``asr_kd.features.frontend.KaldiFbank`` (torchaudio.compliance.kaldi.fbank), the default
* ``librosa``       ``asr_kd.features.frontend.LibrosaLogMel``
* ``ta_melspec``    ``torchaudio.transforms.MelSpectrogram`` (an adapter defined here)
* ``knf``           kaldi-native-fbank ``OnlineFbank`` (an adapter defined here; skipped if not installed)

It then runs the whole stage (``asr_kd.stages.features.run``) on a scratch experiment directory
holding the same files as its ``train`` split, with the stage's DataLoader workers, and reports its
wall-clock x real time. Audio is never copied: the manifest points at the recordings folder.

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_features.py [RECORDINGS] [--limit N] [--repeats 3]
        [--workers 2] [--frontends kaldi_fbank,librosa,ta_melspec,knf] [--json PATH]

``RECORDINGS`` defaults to ``../shared/data/fsdd/recordings`` (FSDD: 3000 real 8 kHz spoken digits).
Each figure is the median of ``--repeats`` runs. Prints a table and writes ``--json``
(default ``benchmarks/results/features.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # progress bars would cost time and clutter the table

import numpy as np
import soundfile as sf
import torch

from asr_kd.data.audio import load_audio
from asr_kd.data.manifest import Utterance, audio_sha, write_manifest
from asr_kd.features.frontend import KaldiFbank, LibrosaLogMel, LogMelFrontend
from asr_kd.stages.features import extract_split

REPO = Path(__file__).resolve().parent.parent
DEFAULT_RECORDINGS = REPO.parent / "shared" / "data" / "fsdd" / "recordings"


class TorchaudioMelSpec(LogMelFrontend):
    """``torchaudio.transforms.MelSpectrogram`` (Hann, power 2, natural log), framed like Kaldi."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        import torchaudio.transforms as T

        self.n_fft = 1 << (self.window - 1).bit_length()
        self.transform = T.MelSpectrogram(
            sample_rate=self.sample_rate,
            n_fft=self.n_fft,
            win_length=self.window,
            hop_length=self.shift,
            n_mels=self.num_mel_bins,
            center=False,
            power=2.0,
        )

    def compute(self, wav: torch.Tensor) -> torch.Tensor:
        frames = self.num_frames(wav.numel())
        half = (self.n_fft - self.window) // 2  # as LibrosaLogMel: frame t starts at t * shift
        wav = torch.nn.functional.pad(wav * 32768.0, (half, self.n_fft - self.window - half))
        with torch.no_grad():
            mel = self.transform(wav)  # (F, T)
        return mel.clamp_min(1e-10).log().T[:frames].contiguous()


class KaldiNativeFbank(LogMelFrontend):
    """kaldi-native-fbank with the options ``KaldiFbank`` passes to torchaudio (no dither)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        import kaldi_native_fbank as knf

        self.knf = knf
        opts = knf.FbankOptions()
        opts.frame_opts.samp_freq = self.sample_rate
        opts.frame_opts.frame_length_ms = self.frame_length_ms
        opts.frame_opts.frame_shift_ms = self.frame_shift_ms
        opts.frame_opts.dither = 0.0
        opts.frame_opts.snip_edges = True
        opts.mel_opts.num_bins = self.num_mel_bins
        opts.energy_floor = 0.0
        self.opts = opts

    def compute(self, wav: torch.Tensor) -> torch.Tensor:
        fbank = self.knf.OnlineFbank(self.opts)
        fbank.accept_waveform(self.sample_rate, wav.numpy() * 32768.0)
        fbank.input_finished()
        feats = np.stack([fbank.get_frame(i) for i in range(fbank.num_frames_ready)])
        return torch.from_numpy(feats.astype(np.float32, copy=False))


def frontends(names: list[str]) -> dict[str, LogMelFrontend]:
    makers = {
        "kaldi_fbank": KaldiFbank,
        "librosa": LibrosaLogMel,
        "ta_melspec": TorchaudioMelSpec,
        "knf": KaldiNativeFbank,
    }
    out = {}
    for name in names:
        try:
            out[name] = makers[name](num_mel_bins=80, sample_rate=16000)
        except ImportError as e:
            print(f"# {name}: skipped ({e}); `pip install kaldi-native-fbank` to include it", file=sys.stderr)
    return out


def fsdd_utterances(folder: Path, limit: int | None) -> list[Utterance]:
    files = sorted(folder.glob("*.wav"))[:limit]
    if not files:
        sys.exit(f"{folder}: no .wav files (pass the FSDD recordings folder)")
    return [
        Utterance(id=f.stem, audio=str(f.resolve()), duration=sf.info(str(f)).duration, text="x")
        for f in files
    ]


def median_time(fn, repeats: int) -> tuple[float, list[float], float]:
    """Median wall seconds of ``fn()``, each run's wall seconds, median CPU seconds of this process."""
    times, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(times), times, statistics.median(cpu)


def bench_frontend(fe: LogMelFrontend, utts, wavs, scratch: Path, repeats: int) -> dict:
    """Per-core cost of the stage's path (``extract_split``, no workers) and of the front end alone."""
    folder = scratch / type(fe).__name__

    def stage_path():
        shutil.rmtree(folder, ignore_errors=True)
        extract_split(utts, fe, folder, num_workers=0, fp="bench", desc="bench")

    def frontend_only():
        for w in wavs:
            fe(w)

    fe(wavs[0])  # import and plan caches, outside the timing
    total, total_runs, total_cpu = median_time(stage_path, repeats)
    compute, _, compute_cpu = median_time(frontend_only, repeats)
    frames = json.loads((folder / "index.json").read_text())["total_frames"]
    return {"total_s": total, "total_runs_s": total_runs, "total_cpu_s": total_cpu, "frontend_s": compute,
            "frontend_cpu_s": compute_cpu, "frames": frames}


def bench_stage(utts, scratch: Path, workers: int, repeats: int, features: str) -> dict:
    """``asr_kd.stages.features.run`` end to end on a scratch exp dir whose train split is ``utts``."""
    from hydra import compose, initialize_config_dir

    from asr_kd.stages import features as features_stage
    from asr_kd.stages.base import StageStamp

    exp = scratch / "exp"
    overrides = [f"exp_dir={exp}", f"features={features}", f"features.num_workers={workers}", "force=true"]
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    write_manifest(exp / "data" / "train.jsonl", utts)
    StageStamp(cfg, "prepare").done({"bench": "fsdd recordings"})  # the manifest stands in for prepare

    def run():
        shutil.rmtree(exp / "features", ignore_errors=True)
        features_stage.run(cfg)

    wall, runs, _ = median_time(run, repeats)
    return {"workers": workers, "features": features, "wall_s": wall, "runs_s": runs}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("recordings", nargs="?", type=Path, default=DEFAULT_RECORDINGS)
    p.add_argument("--limit", type=int, default=None, help="use only the first N files")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers of the end-to-end stage run")
    p.add_argument("--frontends", default="kaldi_fbank,librosa,ta_melspec,knf")
    p.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "features.json")
    args = p.parse_args()

    torch.set_num_threads(1)
    utts = fsdd_utterances(args.recordings, args.limit)
    audio_s = sum(u.duration for u in utts)
    print(f"# {len(utts)} files, {audio_s:.0f} s of audio from {args.recordings}; torch threads 1; "
          f"{os.cpu_count()} CPU cores visible, shared with other jobs (figures are medians of "
          f"{args.repeats} runs and stay noisy)")

    # The part every front end shares: decode + resample (+ the content hash the stage stores).
    _, _, decode_s = median_time(lambda: [load_audio(u.audio, 16000) for u in utts], args.repeats)
    _, _, hash_s = median_time(lambda: [audio_sha(u) for u in utts], args.repeats)
    wavs = [load_audio(u.audio, 16000) for u in utts]

    results = {"files": len(utts), "audio_seconds": audio_s, "repeats": args.repeats,
               "torch_threads": 1, "cpu_count": os.cpu_count(), "machine": platform.processor() or
               platform.machine(), "shared_machine": True, "torch": torch.__version__,
               "decode_resample_s": decode_s, "hash_s": hash_s, "frontends": {}}
    reference = KaldiFbank(num_mel_bins=80, sample_rate=16000)
    with tempfile.TemporaryDirectory(prefix="bench_features_") as tmp:
        scratch = Path(tmp)
        for name, fe in frontends(args.frontends.split(",")).items():
            r = bench_frontend(fe, utts, wavs, scratch, args.repeats)
            # how far from the default features (log-mel units): a drop-in replacement is ~1e-3
            r["max_abs_diff_vs_kaldi_fbank"] = max(
                float((fe(w) - reference(w)).abs().max()) for w in wavs[:20]
            )
            r["x_rt_per_core"] = audio_s / r["total_s"]
            r["x_rt_per_cpu_s"] = audio_s / r["total_cpu_s"]
            r["frontend_only_x_rt_per_cpu_s"] = audio_s / r["frontend_cpu_s"]
            results["frontends"][name] = r
        stage = bench_stage(utts, scratch, args.workers, args.repeats, "fbank")
        stage["x_rt"] = audio_s / stage["wall_s"]
        stage["x_rt_per_core"] = stage["x_rt"] / min(os.cpu_count() or 1, max(1, args.workers))
        results["stage"] = stage

    frames = {r["frames"] for r in results["frontends"].values()}
    if len(frames) > 1:
        print(f"# WARNING: front ends disagree on frame counts: {frames}")
    print()
    print("per core = one process, torch threads 1; 'wall' = audio s / wall s, 'CPU' = audio s / CPU s")
    print(f"decode + resample 8->16 kHz (soundfile + torchaudio) {audio_s / decode_s:6.0f} x RT CPU")
    print(f"audio content hash (sha256, kept in the index)     {audio_s / hash_s:6.0f} x RT CPU")
    print()
    print("stage path = decode + resample + hash + log-mel + FeatureWriter + CMVN stats (extract_split)")
    print(f"{'front end':<14}{'stage path wall':>17}{'stage path CPU':>16}{'log-mel only CPU':>18}"
          f"{'frames':>10}{'max |diff| vs default':>23}")
    for name, r in results["frontends"].items():
        print(f"{name:<14}{r['x_rt_per_core']:>17.0f}{r['x_rt_per_cpu_s']:>16.0f}"
              f"{r['frontend_only_x_rt_per_cpu_s']:>18.0f}{r['frames']:>10}"
              f"{r['max_abs_diff_vs_kaldi_fbank']:>23.3g}")
    s = results["stage"]
    print()
    print(f"stage end to end (features=fbank, {s['workers']} DataLoader workers, train split + CMVN): "
          f"{s['x_rt']:.0f} x RT wall, {s['x_rt_per_core']:.0f} x RT per worker core "
          f"(median of {args.repeats}: {', '.join(f'{t:.2f}' for t in s['runs_s'])} s)")

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print("# data loader vs training step (is the loader ever what the model waits on?): bench_train.py")
    print(f"# wrote {args.json}")


if __name__ == "__main__":
    main()
