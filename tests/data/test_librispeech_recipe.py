"""recipe=librispeech on a fabricated LibriSpeech tree: its configs compose and instantiate, the large
teacher takes a training step, and prepare -> features -> teacher runs with BPE and speed perturbation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from hydra import compose, initialize_config_dir

from asr_kd.config import instantiate
from asr_kd.data.manifest import read_manifest
from asr_kd.models.bundle import count_parameters, load_bundle
from asr_kd.paths import ExpPaths

CONF = Path(__file__).resolve().parents[2] / "conf"
SUBSETS = [
    "train-clean-100",
    "train-clean-360",
    "train-other-500",
    "dev-clean",
    "dev-other",
    "test-clean",
    "test-other",
]
WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "a",
    "lazy",
    "dog",
    "sphinx",
    "of",
    "black",
    "quartz",
]


def librispeech_tree(root: Path, per_subset: int = 2) -> None:
    """``root/SUBSET/SPEAKER/CHAPTER/SPEAKER-CHAPTER-NNNN.flac`` + ``SPEAKER-CHAPTER.trans.txt``.

    Four words an utterance: the train ones go through every word, so dev and test hold none unseen.
    """
    rng = np.random.default_rng(0)
    train_words = iter(WORDS * 2)
    for s, subset in enumerate(SUBSETS):
        speaker, chapter = 100 + s, 2000 + s
        folder = root / subset / str(speaker) / str(chapter)
        folder.mkdir(parents=True)
        lines = []
        for i in range(per_subset):
            utt_id = f"{speaker}-{chapter}-{i:04d}"
            t = np.arange(round(rng.uniform(0.8, 1.5) * 16000)) / 16000
            wav = 0.2 * np.sin(2 * np.pi * rng.uniform(150, 400) * t) + 0.01 * rng.normal(size=len(t))
            sf.write(folder / f"{utt_id}.flac", wav.astype(np.float32), 16000)
            words = (
                [next(train_words) for _ in range(4)] if subset.startswith("train") else rng.choice(WORDS, 4)
            )
            lines.append(f"{utt_id} " + " ".join(words).upper())
        (folder / f"{speaker}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")


def recipe(tmp_path: Path, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=["recipe=librispeech", f"exp_dir={tmp_path / 'exp'}", *overrides])


def test_librispeech_recipe_models_instantiate_and_take_a_step(tmp_path):
    cfg = recipe(tmp_path)
    teacher = instantiate(cfg.teacher.model, input_dim=80, vocab_size=500)
    student = instantiate(cfg.student.model, input_dim=80, vocab_size=500)
    assert count_parameters(teacher) > 100e6 and count_parameters(student) < count_parameters(teacher) / 4
    optimizer = torch.optim.AdamW(teacher.parameters(), lr=1e-4)  # one step of the full-size teacher
    logits, lengths = teacher(torch.randn(1, 200, 80), torch.tensor([200]))
    assert logits.shape == (1, lengths[0], 500)
    loss = torch.nn.functional.ctc_loss(
        logits.log_softmax(-1).transpose(0, 1), torch.tensor([[5, 6, 7]]), lengths, torch.tensor([3])
    )
    loss.backward()
    optimizer.step()


def test_librispeech_recipe_runs_prepare_features_and_a_teacher_step(tmp_path):
    from asr_kd.stages import features, prepare, teacher

    librispeech_tree(tmp_path / "LibriSpeech")
    cfg = recipe(
        tmp_path,
        f"data.root={tmp_path / 'LibriSpeech'}",
        "features.num_workers=0",
        "train.teacher.steps=1",
        "train.teacher.num_workers=0",
        "teacher.model.num_layers=2",  # the full depth takes its step in the test above
    )
    prepare.run(cfg)
    paths = ExpPaths(Path(cfg.exp_dir))
    train = read_manifest(paths.manifest("train"))
    assert len(train) == 3 * 3 * 2  # three train subsets, two utterances each, speed 0.9, 1.0, 1.1
    assert {u.id.rsplit("_", 1)[-1] for u in train if "_sp" in u.id} == {"sp0.9", "sp1.1"}
    for split in cfg.test_sets:
        assert len(read_manifest(paths.manifest(split))) == 2
    features.run(cfg)
    teacher.run(cfg)
    bundle = load_bundle(paths.checkpoint("teacher"))
    assert type(bundle.tokenizer).__name__ == "BpeTokenizer"
    assert bundle.model_config["d_model"] == 512
    assert bundle.tokenizer.decode(bundle.tokenizer.encode("the lazy dog")) == "the lazy dog"
