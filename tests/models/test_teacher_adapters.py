"""Bring your own teacher: pretrained torchaudio and transformers CTC models (random weights, real
architectures, saved to local files) load, cache, teach a student that decodes and is scored; the
frame-rate bridge merges in probability space; the vocabulary bridge maps labels onto the corpus's
characters; mismatches are one-line errors naming both sides; transformers is imported only when
chosen."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchaudio
from hydra import compose, initialize_config_dir

from asr_kd.data.tokenizer import CharTokenizer
from asr_kd.distill.bridge import fit_frames, merge_factor, merge_frames
from asr_kd.distill.cache import PosteriorCache
from asr_kd.distill.loss import FrameRateMismatchError
from asr_kd.distill.teacher_cache import load_cache_teachers, open_cache
from asr_kd.errors import ConfigError, UnsafeFileError, UserError
from asr_kd.models.adapters import TeacherLabels, map_labels, teacher_tokenizer
from asr_kd.models.torchaudio_ctc import TorchaudioCTC, bundle_labels
from asr_kd.paths import ExpPaths
from asr_kd.stages import get_stage
from asr_kd.stages.plan import Plan
from asr_kd.stages.teacher import adopt_pretrained

CONF = str(Path(__file__).resolve().parents[2] / "conf")
W2V = torchaudio.pipelines.WAV2VEC2_ASR_BASE_960H
#: wav2vec2_base-shaped, shrunk: the same seven convolutions (320-sample stride: 20 ms), 2 thin layers.
TINY_PARAMS = {**W2V._params,
               "extractor_conv_layer_config": [(32, 10, 5)] + [(32, 3, 2)] * 4 + [(32, 2, 2)] * 2,
               "encoder_embed_dim": 32, "encoder_pos_conv_kernel": 16, "encoder_pos_conv_groups": 2,
               "encoder_num_layers": 2, "encoder_num_heads": 2, "encoder_ff_interm_features": 64}
#: A tiny run: the smoke corpus, few student steps, greedy decoding, no export.
QUICK = ["recipe=smoke", "data.num_train=24", "data.num_dev=4", "data.num_test=4", "decode=greedy",
         "export.systems=[]", "train.student.steps=4", "train.student.warmup_steps=1",
         "train.student.eval_every=4"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def config(exp, *overrides):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose("config", overrides=[f"exp_dir={exp}", *QUICK, *overrides])


# ---- frame-rate bridge ------------------------------------------------------------------------


def test_merge_averages_probabilities_then_logs():
    probs = torch.tensor([[0.9, 0.1, 0.0], [0.1, 0.1, 0.8], [0.2, 0.8, 0.0], [0.4, 0.4, 0.2],
                          [0.0, 0.0, 1.0]])
    merged = merge_frames(probs.clamp_min(1e-12).log(), 2).exp()
    expected = torch.tensor([[0.5, 0.1, 0.4], [0.3, 0.6, 0.1], [0.0, 0.0, 1.0]])  # the last frame alone
    assert torch.allclose(merged, expected, atol=1e-5)
    assert torch.allclose(merged.sum(-1), torch.ones(3), atol=1e-5)  # still distributions
    spike = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]).clamp_min(1e-12).log()  # one-frame token
    assert merge_frames(spike, 2).exp()[0, 2] == pytest.approx(0.5)  # keeps half its mass
    assert merge_frames(spike, 1) is spike


def test_merge_factor_names_both_rates():
    assert merge_factor(20.0, 40.0) == 2 and merge_factor(40.0, 40.0) == 1
    for teacher, student in ((20.0, 30.0), (40.0, 20.0)):
        with pytest.raises(FrameRateMismatchError, match=f"{teacher:g} ms.*{student:g} ms") as e:
            merge_factor(teacher, student)
        assert "\n" not in str(e.value)


def test_fit_frames_trims_or_repeats_within_tolerance():
    x = torch.arange(12.0).reshape(6, 2)
    assert fit_frames(x, 5, "u").shape == (5, 2)
    assert torch.equal(fit_frames(x, 7, "u")[-1], x[-1])
    with pytest.raises(FrameRateMismatchError, match="utterance u: the teacher gives 6 frames.*student 12"):
        fit_frames(x, 12, "u")


# ---- vocabulary bridge ------------------------------------------------------------------------


def test_torchaudio_labels_map_onto_normalised_text():
    tokenizer = teacher_tokenizer([], bundle_labels("WAV2VEC2_ASR_BASE_960H"))
    assert tokenizer.tokens[:5] == ["<blk>", " ", "e", "t", "a"] and len(tokenizer) == 29
    ids = tokenizer.encode("don't stop")
    assert [W2V.get_labels()[i] for i in ids] == list("DON'T|STOP")  # the teacher's own ids
    with pytest.raises(KeyError, match="'é'"):
        tokenizer.encode("café")


def test_blank_elsewhere_moves_first_and_clashes_are_refused():
    tokens, order = map_labels(TeacherLabels(("|", "A", "<pad>", "<unk>", "B"), blank=2))
    assert tokens == ["<blk>", " ", "a", "<unk>", "b"] and order == [2, 0, 1, 3, 4]
    with pytest.raises(ConfigError, match="'a' and 'A' both map to the token 'a'"):
        map_labels(TeacherLabels(("-", "a", "A")))
    with pytest.raises(ConfigError, match="needs a pretrained teacher"):
        teacher_tokenizer([], None)


# ---- torchaudio -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    """A wav2vec2_base-shaped torchaudio bundle, shrunk, registered as ``TINY_W2V_ASR``, and its
    random weights saved as a state_dict."""
    mp = pytest.MonkeyPatch()
    tiny = dataclasses.replace(W2V, _params=TINY_PARAMS)
    mp.setattr(torchaudio.pipelines, "TINY_W2V_ASR", tiny, raising=False)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny_w2v") / "model.pt"
    torch.save(torchaudio.models.wav2vec2_model(**TINY_PARAMS).state_dict(), path)
    yield path
    mp.undo()


def test_full_size_wav2vec2_base_loads_from_a_local_state_dict(tmp_path, tiny_bundle):
    torch.manual_seed(0)
    path = tmp_path / "model.pt"
    torch.save(torchaudio.models.wav2vec2_model(**W2V._params).state_dict(), path)
    teacher = TorchaudioCTC("WAV2VEC2_ASR_BASE_960H", str(path))
    assert teacher.frame_shift_ms == 20.0 and teacher.input == "waveform" and len(teacher.tokens) == 29
    with torch.inference_mode():
        log_probs, lengths = teacher.log_posteriors(0.1 * torch.randn(1, 16000), torch.tensor([16000]))
    assert log_probs.shape == (1, 49, 29) and lengths.tolist() == [49]
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(1, 49), atol=1e-4)
    with pytest.raises(UserError, match="does not hold TINY_W2V_ASR's weights") as e:
        TorchaudioCTC("TINY_W2V_ASR", str(path))
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="not a torchaudio ASR bundle"):
        TorchaudioCTC("WAV2VEC2_BASE", str(path))  # pretrained only: no CTC head, no labels


@pytest.fixture(scope="module")
def torchaudio_exp(tiny_bundle, tmp_path_factory):
    exp = tmp_path_factory.mktemp("torchaudio_exp")
    cfg = config(exp, "teacher=torchaudio_ctc", "teacher.bundle=TINY_W2V_ASR",
                 f"teacher.checkpoint={tiny_bundle}")
    get_stage("all")(cfg)
    return exp, cfg


def test_torchaudio_teacher_caches_teaches_and_is_reported(torchaudio_exp, tiny_bundle):
    exp, cfg = torchaudio_exp
    paths = ExpPaths(exp)
    assert not paths.checkpoint("teacher").exists()  # its weights stay where they are
    meta = json.loads((paths.cache_dir("teacher_k16", "train") / "meta.json").read_text())
    assert (meta["teacher_frame_shift_ms"], meta["merge"], meta["frame_shift_ms"]) == (20.0, 2, 40.0)
    assert meta["teacher_config"] == {"architecture": "torchaudio.pipelines.TINY_W2V_ASR",
                                      "input": "waveform", "bundle": "TINY_W2V_ASR"}
    cache = PosteriorCache(paths.cache_dir("teacher_k16", "train"))
    assert len(cache) == cfg.data.num_train and cache.vocab_size == 29
    report = json.loads((exp / "report.json").read_text())
    teacher = report["teacher"]
    assert teacher["architecture"] == "torchaudio.pipelines.TINY_W2V_ASR"
    assert teacher["frame_shift_ms"] == 20.0
    assert teacher["sha"] == meta["teacher_sha"] and teacher["vocabulary"] == meta["vocabulary"]
    assert teacher["vocabulary"] == (exp / "data/tokens.txt").read_text().replace("<space>", " ").splitlines()
    for test_set in cfg.test_sets:  # the teacher and each student decoded and scored
        assert {"teacher", "student_ctc", "student_kd"} <= set(report["test_sets"][test_set])
        assert "symbol_delay_ms" in report["test_sets"][test_set]["student_ctc"]  # vs the 20 ms teacher
        assert (exp / "decode/teacher" / f"{test_set}.align_frames.json").is_file()
    assert report["systems"]["teacher"]["params"] == teacher["params"]
    assert report["systems"]["teacher"]["config"]["adapter"]["bundle"] == "TINY_W2V_ASR"


def test_force_rewrites_the_cache(torchaudio_exp):
    exp, cfg = torchaudio_exp
    shard = ExpPaths(exp).cache_dir("teacher_k16", "train") / "shard-00000.val"
    before = shard.stat().st_ino
    get_stage("cache")(cfg)  # up to date: kept
    assert shard.stat().st_ino == before
    forced = cfg.copy()
    forced.force = True
    get_stage("cache")(forced)
    assert shard.stat().st_ino != before  # written anew, not kept as finished


def test_mismatches_are_one_line_errors_naming_both_sides(torchaudio_exp):
    exp, cfg = torchaudio_exp
    paths = ExpPaths(exp)
    with pytest.raises(UserError) as e:  # a vocabulary prepared without tokenizer=teacher
        adopt_pretrained(cfg, paths, CharTokenizer.from_texts(["abc d"]))
    assert "has 29 tokens" in str(e.value) and "tokens.txt 6" in str(e.value) and "\n" not in str(e.value)
    spec = Plan(cfg).caches["teacher_k16"]
    teachers = load_cache_teachers(cfg.teacher, paths, spec)
    with pytest.raises(FrameRateMismatchError, match="every 20.0 ms.*every 40.0 ms .teacher frames of") as e:
        open_cache(paths, spec, "train", 2, 10.0, teachers)  # a student at the teacher's rate
    assert "\n" not in str(e.value)


# ---- transformers -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hf_model(tmp_path_factory) -> Path:
    """A tiny Wav2Vec2ForCTC (20 ms frames: 5 x 64 samples) saved with save_pretrained, with a
    Hugging Face style vocabulary (``<pad>`` is the blank)."""
    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

    folder = tmp_path_factory.mktemp("hf_model")
    labels = ["<pad>", "<unk>", *W2V.get_labels()[1:]]
    torch.manual_seed(0)
    config = Wav2Vec2Config(vocab_size=len(labels), hidden_size=32, num_hidden_layers=2,
                            num_attention_heads=2, intermediate_size=64, conv_dim=(32, 32),
                            conv_stride=(5, 64), conv_kernel=(10, 64), num_conv_pos_embeddings=16,
                            num_conv_pos_embedding_groups=2, pad_token_id=0)
    Wav2Vec2ForCTC(config).save_pretrained(folder)
    (folder / "vocab.json").write_text(json.dumps({label: i for i, label in enumerate(labels)}))
    return folder


def test_hf_teacher_end_to_end(hf_model, tmp_path):
    cfg = config(tmp_path, "teacher=hf_ctc", f"teacher.checkpoint={hf_model}", "~systems.student_ctc",
                 "cache.k=null")
    get_stage("all")(cfg)
    tokens = (tmp_path / "data/tokens.txt").read_text().replace("<space>", " ").splitlines()
    assert tokens[:4] == ["<blk>", "<unk>", " ", "e"]
    meta = json.loads((ExpPaths(tmp_path).cache_dir("teacher_full", "train") / "meta.json").read_text())
    assert meta["teacher_config"]["architecture"] == "transformers.Wav2Vec2ForCTC" and meta["merge"] == 2
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["teacher"]["input"] == "waveform"
    assert {"teacher", "student_kd", "student_kd_streaming"} <= set(report["test_sets"]["test_seen"])


def test_transformers_is_imported_only_when_chosen():
    code = ("import sys, asr_kd.cli, asr_kd.stages.cache, asr_kd.stages.decode, asr_kd.stages.teacher, "
            "asr_kd.models.hf_ctc; assert 'transformers' not in sys.modules, 'transformers imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_hf_directory_without_a_model_is_one_line(tmp_path):
    from asr_kd.models.hf_ctc import model_labels

    with pytest.raises(UserError, match="no config.json"):
        model_labels(str(tmp_path))
    with pytest.raises(ConfigError, match="teacher.checkpoint is not set"):
        model_labels(None)


def test_pretrained_teacher_files_never_run_code(hf_model, tiny_bundle, tmp_path, code_payload):
    import shutil

    from asr_kd.models.hf_ctc import HFCTC

    payload, marker = code_payload
    pickled = tmp_path / "hf_bin"
    shutil.copytree(hf_model, pickled)
    for weights in pickled.glob("*.safetensors"):
        weights.unlink()
    torch.save({"weights": payload}, pickled / "pytorch_model.bin")  # transformers would unpickle it
    with pytest.raises(UnsafeFileError, match="no model.safetensors; refusing to load pickled weights"):
        HFCTC(str(pickled))
    torch.save({"state_dict": payload}, tmp_path / "w2v.pt")
    with pytest.raises(UnsafeFileError, match="w2v.pt: refusing to load"):
        TorchaudioCTC("TINY_W2V_ASR", str(tmp_path / "w2v.pt"))
    assert not marker.exists()


def test_posteriors_do_not_depend_on_the_batch(tiny_bundle):
    teacher = TorchaudioCTC("TINY_W2V_ASR", str(tiny_bundle))
    wavs = [0.1 * torch.randn(n) for n in (8000, 12000)]
    x = torch.nn.utils.rnn.pad_sequence(wavs, batch_first=True)
    with torch.inference_mode():
        batched, lengths = teacher.log_posteriors(x, torch.tensor([8000, 12000]))
        alone, n = teacher.log_posteriors(wavs[0][None], torch.tensor([8000]))
    assert lengths[0] == n[0]
    np.testing.assert_allclose(batched[0, : int(n[0])], alone[0], atol=1e-5)


def test_a_recipe_that_picks_another_tokenizer_is_told_to_add_tokenizer_teacher(tmp_path):
    from asr_kd.stages.plan import Plan

    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("config", overrides=["recipe=librispeech", "teacher=torchaudio_ctc"])
    with pytest.raises(ConfigError, match="add tokenizer=teacher .this config has asr_kd.data.bpe"):
        Plan(cfg)
