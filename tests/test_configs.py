"""Every option of every config group (found in conf/, not listed here) composes, every ``_target_``
names a real callable in asr_kd that accepts the node's keys, every model and objective
instantiates, and every recipe and study overlay resolves into a plan of systems. A typo in a
distill option fails here in seconds, not after the teacher stage."""

import inspect
import re
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from hydra.utils import get_object
from omegaconf import OmegaConf

from asr_kd.config import ALLOWED_TARGETS, instantiate
from asr_kd.errors import ConfigError
from asr_kd.models.adapters import is_pretrained
from asr_kd.stages.plan import Plan
from asr_kd.stages.prepare import PREPARE_KEYS

CONF = Path(__file__).resolve().parent.parent / "conf"
GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir())
OPTIONS = [(g, y.stem) for g in GROUPS for y in sorted((CONF / g).glob("*.yaml"))]
RECIPES = sorted(y.stem for y in (CONF / "recipe").glob("*.yaml"))
STUDIES = sorted(y.stem for y in (CONF / "study").glob("*.yaml"))


def _compose(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def _target_nodes(node, where=""):
    if isinstance(node, dict):
        if "_target_" in node:
            yield where, node
        for key, value in node.items():
            yield from _target_nodes(value, f"{where}.{key}" if where else str(key))


def test_every_group_has_options():
    assert {"cache", "data", "decode", "distill", "features", "recipe", "student", "study", "teacher",
            "tokenizer", "train"} <= set(GROUPS)


@pytest.mark.parametrize("group,option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_option_composes_and_its_targets_accept_their_keys(group, option):
    cfg = _compose(f"{group}={option}")
    container = OmegaConf.to_container(cfg, resolve=False)
    for where, node in _target_nodes(container):
        target = get_object(node["_target_"])
        assert node["_target_"].startswith("asr_kd.") and callable(target), where
        keys = {k: v for k, v in node.items() if not k.startswith("_")}
        if where == "data":  # the data node also holds prepare's own settings
            keys = {k: v for k, v in keys.items() if k not in PREPARE_KEYS}
        inspect.signature(target).bind_partial(**keys)  # a misspelt key raises TypeError here


@pytest.mark.parametrize("group,option", [o for o in OPTIONS if o[0] in ("teacher", "student")],
                         ids=lambda o: str(o))
def test_every_model_option_instantiates(group, option):
    cfg = _compose(f"{group}={option}")
    if is_pretrained(cfg[group]):  # torchaudio_ctc, hf_ctc: the user's weights; the student adopts the labels
        assert cfg.tokenizer._target_ == "asr_kd.models.adapters.teacher_tokenizer"
        return
    model = instantiate(cfg[group].model, vocab_size=30, input_dim=80)
    assert model.subsampling_factor == 4  # teacher and students share the 40 ms frame rate


@pytest.mark.parametrize("option", sorted(y.stem for y in (CONF / "distill").glob("*.yaml")))
def test_every_objective_instantiates(option):
    objective = instantiate(_compose(f"distill={option}").distill)
    assert callable(objective) and isinstance(objective.needs_teacher, bool)


def test_features_options_instantiate():
    for option in ("fbank", "librosa"):
        frontend = instantiate(_compose(f"features={option}").features.frontend, sample_rate=16000)
        assert frontend.num_frames(16000) == 98


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("study", [None, *STUDIES])
def test_every_recipe_and_study_resolves_into_systems(recipe, study):
    cfg = _compose(f"recipe={recipe}", *([f"study={study}"] if study else []))
    plan = Plan(cfg)
    assert {"student_ctc", "student_kd"} <= set(plan.systems)
    assert not plan.systems["student_ctc"].build_objective().needs_teacher  # the baseline is a config
    for system in plan.systems.values():
        assert system.cache is None or system.cache in plan.caches
        instantiate({**system.student["model"]}, vocab_size=30, input_dim=80)


def test_smoke_study_has_four_systems_and_two_caches():
    plan = Plan(_compose("recipe=smoke", "study=smoke"))
    assert len(plan.systems) >= 4 and set(plan.caches) == {"teacher_k16", "teacher_k4"}


@pytest.mark.parametrize("name", ["student_kd_lm", "student_ctc_streaming", "teacher_int8"])
def test_a_system_named_like_another_models_decode_is_refused(name):
    with pytest.raises(ConfigError, match=f"systems.{name}: the name of the _"):
        Plan(_compose(f"+distill@systems.{name}.objective=ctc_only"))


def test_a_system_states_only_its_differences():
    plan = Plan(_compose("study=kd_demo", "distill.temperature=2"))
    assert plan.systems["student_kd"].objective["temperature"] == 2.0  # the top-level distill node
    assert plan.systems["student_kd_T1"].objective["temperature"] == 1.0
    assert plan.systems["student_kd_seed1"].train["seed"] == 1
    assert plan.systems["student_kd_seed1"].train["steps"] == plan.systems["student_kd"].train["steps"]
    assert plan.systems["student_kd_kfull"].cache == "teacher_full"
    # a system's fingerprint is its own: changing T changes student_kd only
    before = Plan(_compose("study=kd_demo"))
    changed = {n for n in plan.systems
               if plan.fingerprint(f"student/{n}") != before.fingerprint(f"student/{n}")}
    assert changed == {"student_kd", "student_kd_seed1", "student_kd_seed2"}  # its seed repeats follow it


def test_a_recipe_setting_reaches_a_system_that_names_its_own_student():
    plan = Plan(_compose("recipe=demo", "study=frontier"))  # demo: student_overrides {model: {dropout: 0.0}}
    emformer = plan.systems["emf_160_kd"].student["model"]
    assert emformer["_target_"].endswith("EmformerCTC")
    assert emformer["dropout"] == 0.0 and emformer["chunk_frames"] == 4  # the recipe's and its own change
    assert plan.systems["student_ctc"].student["model"]["dropout"] == 0.0
    plan = Plan(_compose("recipe=demo", "study=frontier", "student_overrides.model.dropout=0.2"))
    assert {s.student["model"]["dropout"] for s in plan.systems.values()} == {0.2}


def test_a_system_names_an_option_changes_one_or_changes_the_runs():
    plan = Plan(_compose("recipe=smoke", "+systems.a={objective: kd_spikes}",
                         "+systems.b={objective: {from: kd, temperature: 1.5}}",
                         "+systems.c={objective: {temperature: 3.0}, student: emformer_small}"))
    assert plan.systems["a"].objective["blank_weight"] == 0.0  # distill/kd_spikes as composed by Hydra
    assert plan.systems["b"].objective["temperature"] == 1.5
    assert plan.systems["c"].objective == {**plan.systems["student_kd"].objective, "temperature": 3.0}
    assert "mformer" in plan.systems["c"].student["model"]["_target_"]
    with pytest.raises(ConfigError, match="systems.d.student: student has no option 'nope'; options: "):
        Plan(_compose("+systems.d={student: nope}"))


def test_seeds_expand_into_named_repeats():
    plan = Plan(_compose("recipe=smoke", "+systems.student_ctc.seeds=[3,4]"))
    names = list(plan.systems)
    assert names[names.index("student_ctc"):][:3] == ["student_ctc", "student_ctc_seed3", "student_ctc_seed4"]
    assert plan.systems["student_ctc_seed4"].train["seed"] == 4
    assert {**plan.systems["student_ctc_seed4"].config, "train": None} == {
        **plan.systems["student_ctc"].config, "train": None}
    with pytest.raises(ConfigError, match="student_ctc_seed1 is already a system"):
        Plan(_compose("+systems.student_ctc.seeds=[1]", "+systems.student_ctc_seed1={}"))


@pytest.mark.parametrize("study", STUDIES)
def test_a_study_states_each_system_once(study):
    """No system named twice (a defaults-list line and a systems entry), no seed repeat spelt out,
    no recipe setting repeated per system: those are the plan's and the recipe's."""
    text = (CONF / "study" / f"{study}.yaml").read_text()
    node = OmegaConf.load(CONF / "study" / f"{study}.yaml")
    assert "@systems." not in text and "dropout: 0.0" not in text
    assert not [name for name in node.get("systems", {}) if re.search(r"_seed\d+$", name)]


def test_train_blocks_share_one_source():
    cfg = OmegaConf.load(CONF / "train" / "default.yaml")  # the student block starts from the teacher's
    teacher, student = OmegaConf.to_container(cfg.teacher), OmegaConf.to_container(cfg.student)
    assert {k for k in teacher if teacher[k] != student[k]} == {"steps"}


def test_unknown_keys_are_refused():
    with pytest.raises(ConfigCompositionException):
        _compose("distill.temprature=2")


@pytest.mark.parametrize("override,message", [
    ("train.student.steps=abc", "train.student.steps: Value 'abc'"),
    ("train.teacher.peak_lr=fast", "train.teacher.peak_lr"),
    ("distill.temperature=hot", "systems.student_kd.objective.temperature"),
    ("distill.topk_mode=nope", "topk_mode must be 'residual' or 'renorm'"),
    ("+systems.student_x.objective._target_=asr_kd.distill.objectives.NoSuch", "does not exist"),
    ("+systems.student_x.optimiser=adam", "unknown key(s) ['optimiser']"),
    ("cache.k=many", "cache.k"),
    ("+student.model.extra={_target_:asr_kd.utils.write_jsonl}", "systems.student_ctc.student: _target_ "
     "'asr_kd.utils.write_jsonl' is outside"),
    ("teacher.model._target_=asr_kd.utils.os.system", "teacher: _target_ 'asr_kd.utils.os.system' is out"),
    ("score.resamples=0", "score.resamples must be >= 1, got 0"),
    ("decode.lm.beam_size=-1", "decode.lm.beam_size must be >= 1, got -1"),
    ("cache.k=0", "systems.student_kd.cache.k must be >= 1"),
    ("cache.k=-3", "systems.student_kd.cache.k must be >= 1"),
    ("cache.shard_utts=0", "cache.shard_utts must be >= 1"),
    ("features.frontend.num_mel_bins=1", "features.frontend.num_mel_bins must be >= 4, not 1"),
    ("features.frontend.frame_shift_ms=0", "need 0 < frame_shift_ms <= frame_length_ms"),
    ("train.student.max_frames=-100", "train.student: train max_frames must be > 0, not -100"),
    ("train.teacher.eval_every=0", "train.teacher: train eval_every must be > 0"),
    ("train.student.peak_lr=-1", "train peak_lr must be > 0"),
    ("train.student.warmup_steps=-1", "train warmup_steps must be >= 0"),
])
def test_wrong_settings_fail_at_start_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        Plan(_compose(override))


def test_instantiate_refuses_targets_outside_the_package():
    with pytest.raises(ConfigError, match="outside the allowed modules"):
        instantiate({"_target_": "os.system", "command": "true"})


def test_help_lists_every_stage_group_and_option():
    """`asr-kd --help` names every stage with what it does, and every config group with all its options."""
    import subprocess
    import sys

    from asr_kd.stages import STAGES

    proc = subprocess.run([sys.executable, "-c", "from asr_kd.cli import main; main()", "--help"],
                          capture_output=True, text=True, check=True)
    lines = proc.stdout.splitlines()
    for stage in STAGES:
        assert any(re.match(rf"  {stage} +\w", line) for line in lines), stage
    for group in GROUPS:
        if group == "hydra":
            continue
        listed = next(line for line in lines if line.startswith(f"{group}: "))
        options = {y.stem for y in (CONF / group).glob("*.yaml")}
        assert set(listed.split(": ", 1)[1].split(", ")) == options, group


@pytest.mark.parametrize("config", [
    {"_target_": "asr_kd.utils.os.system", "command": "true"},  # a re-export, under the package's prefix
    {"_target_": "asr_kd.utils.write_jsonl", "path": "x", "rows": []},  # in the package, but not a model
    {"_target_": "asr_kd.distill.objectives.CTCOnly", "extra": {"_target_": "asr_kd.utils.write_jsonl"}},
    {"_target_": "asr_kd.distill.objectives.CTCOnly", "extra": [{"_target_": "os.system", "command": "x"}]},
], ids=["re-export", "not-a-model", "nested", "nested-in-list"])
def test_instantiate_checks_every_target_by_exact_name(config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="outside the allowed modules"):
        instantiate(config)
    assert not list(tmp_path.iterdir())  # nothing was called


def test_every_shipped_target_is_allowed():
    targets = {line.split(":", 1)[1].strip() for y in CONF.rglob("*.yaml")
               for line in y.read_text().splitlines() if line.strip().startswith("_target_:")}
    assert targets <= ALLOWED_TARGETS


def test_later_settings_enter_a_systems_fingerprint_only_when_used():
    plan = Plan(_compose("recipe=smoke",
                         "+systems.a={objective: {from: kd, delay_window: 2}, labelled: 0.25}"))
    assert plan.systems["a"].objective["delay_window"] == 2 and plan.systems["a"].config["labelled"] == 0.25
    kd = plan.systems["student_kd"]
    assert "delay_window" not in kd.objective and "labelled" not in kd.config  # as fingerprinted before
    assert kd.build_objective().delay_window == 0
    for bad in ("labelled: 1.5", "labelled: 0", "objective: {from: kd, delay_window: -1}"):
        with pytest.raises(ConfigError, match="systems.b"):
            Plan(_compose(f"+systems.b={{{bad}}}"))
