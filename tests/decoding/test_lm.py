"""Word n-gram LM (ARPA) and lexicon beam search (asr_kd.decoding.lm)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from asr_kd.data.tokenizer import CharTokenizer
from asr_kd.decoding.lm import LexiconBeamSearch, oov_rate, write_arpa, write_lexicon
from asr_kd.distill.cache import PosteriorCache, ShardWriter, cache_meta, write_index, write_meta
from asr_kd.distill.objectives import FrameKD
from asr_kd.distill.targets import CachedTargets, topk_log_probs
from asr_kd.errors import ConfigError
from asr_kd.models.ctc import ctc_greedy

TEXTS = ["turn on the light", "turn off the light", "turn on the radio", "play the radio", "the light"]


def _read_arpa(path):
    """``{(w1..wn): (log10 p, log10 backoff)}`` of an ARPA file."""
    grams = {}
    for line in path.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) >= 2 and not line.startswith("ngram"):
            grams[tuple(parts[1].split())] = (float(parts[0]), float(parts[2]) if len(parts) > 2 else 0.0)
    return grams


def _arpa_prob(grams, context: tuple, word: str) -> float:
    """P(word | context) by ARPA back-off."""
    if context + (word,) in grams:
        return 10 ** grams[context + (word,)][0]
    if not context:
        return 10 ** grams[("<unk>",)][0]
    backoff = 10 ** grams[context][1] if context in grams else 1.0
    return backoff * _arpa_prob(grams, context[1:], word)


@pytest.mark.parametrize("order", [1, 2, 3])
def test_arpa_distributions_sum_to_one_in_every_context(tmp_path, order):
    write_arpa(TEXTS, tmp_path / "lm.arpa", order=order)
    grams = _read_arpa(tmp_path / "lm.arpa")
    vocab = {w for t in TEXTS for w in t.split()} | {"</s>", "<unk>"}
    contexts = [(), ("<s>",), ("the",), ("turn", "on"), ("play", "the"), ("radio", "light")]
    for context in contexts:
        context = context[len(context) - (order - 1):] if order > 1 else ()
        total = sum(_arpa_prob(grams, context, w) for w in vocab)
        assert total == pytest.approx(1.0, abs=1e-4), context
    if order == 3:  # seen continuations beat unseen ones
        assert _arpa_prob(grams, ("turn", "on"), "the") > _arpa_prob(grams, ("turn", "on"), "light")
        assert math.isclose(grams[("<s>",)][0], -99.0)


def test_lm_refuses_bad_settings(tmp_path):
    with pytest.raises(ValueError, match="order"):
        write_arpa(TEXTS, tmp_path / "lm.arpa", order=0)
    with pytest.raises(ValueError, match="no training text"):
        write_arpa([], tmp_path / "lm.arpa")


def test_lexicon_and_oov(tmp_path):
    tok = CharTokenizer.from_texts(TEXTS)
    words = write_lexicon(["light", "radio", "héllo"], tok, tmp_path / "lexicon.txt")
    assert words == ["light", "radio"]  # 'é' cannot be spelled with this vocabulary
    assert (tmp_path / "lexicon.txt").read_text().splitlines()[0] == "light l i g h t |"
    assert oov_rate(["light radio", "lamp"], words) == pytest.approx(1 / 3)


def _logits(tok: CharTokenizer, frames: list[dict[str, float]]) -> torch.Tensor:
    """(T, V) logits: per frame, log of the given probabilities (rest spread over other tokens)."""
    out = torch.full((len(frames), len(tok)), -8.0)
    for t, probs in enumerate(frames):
        for ch, p in probs.items():
            out[t, tok.tokens.index(ch)] = math.log(p)
    return out


def _lm_files(folder) -> CharTokenizer:
    """The LM and lexicon of TEXTS in ``folder``; returns their character vocabulary."""
    tok = CharTokenizer.from_texts(TEXTS)
    write_arpa(TEXTS, folder / "lm.arpa")
    write_lexicon({w for t in TEXTS for w in t.split()}, tok, folder / "lexicon.txt")
    return tok


def test_beam_search_spells_lexicon_words_that_greedy_misspells(tmp_path):
    tok = _lm_files(tmp_path)
    # "the lught": the acoustic model prefers 'u' over 'i' in the second word
    spelled = [{"t": 0.9}, {"h": 0.9}, {"e": 0.9}, {" ": 0.9}, {"l": 0.9}, {"u": 0.6, "i": 0.35},
               {"g": 0.9}, {"h": 0.9}, {"t": 0.9}]
    frames = []
    for f in spelled:
        frames += [f, {"<blk>": 0.9}]
    logits = _logits(tok, frames)
    greedy = tok.decode(ctc_greedy(logits[None], torch.tensor([len(frames)]))[0])
    assert greedy == "the lught"
    search = LexiconBeamSearch(tok, tmp_path / "lexicon.txt", tmp_path / "lm.arpa", lm_weight=1.0)
    assert search(logits) == "the light"
    assert search(logits[:0]) == ""


def test_beam_search_needs_a_character_vocabulary(tmp_path):
    with pytest.raises(ValueError, match="character vocabulary"):
        LexiconBeamSearch(CharTokenizer(["<blk>", "a", "b"]), tmp_path / "x", tmp_path / "y")


def test_lm_weight_is_tuned_per_system_on_dev():
    """The weight whose decodes score best on the dev set wins; the first of equals on ties."""
    from types import SimpleNamespace

    from asr_kd.decoding.lm import tune_lm_weight

    class Dev:
        utts = [SimpleNamespace(text=t) for t in TEXTS]

        def __len__(self):
            return len(self.utts)

        def __getitem__(self, i):
            return {"feats": torch.zeros(8 + i, 4)}

    forwards = []

    def model(feats, lengths):
        forwards.append(int(lengths[0]))
        return torch.full((1, len(feats[0]), 5), float(len(forwards) - 1)), lengths

    def make_search(weight, penalty):
        """Weight 2 with penalty 1 decodes every utterance right, weight 3 all but the first, others none."""
        def search(logits):
            utt = int(logits[0, 0])
            right = (weight == 2 and penalty == 1) or (weight == 3 and utt > 0)
            return TEXTS[utt] if right else "turn"
        return search

    best, wers = tune_lm_weight(SimpleNamespace(model=model), Dev(), make_search, [0.5, 3, 2, 4], [0, 1])
    assert best == (2, 1) and wers[2, 1] == 0 and 0 < wers[3, 0] < wers[0.5, 0] == wers[4, 1] == wers[2, 0]
    assert forwards == [8, 9, 10, 11, 12]  # the acoustic model runs once per utterance, not per setting
    always_same = lambda w, b: lambda logits: "the light"  # noqa: E731
    best, _ = tune_lm_weight(SimpleNamespace(model=model), Dev(), always_same, [1, 2], [0, 1])
    assert best == (1, 0)


def test_blank_penalty_lets_words_through_an_over_confident_blank(tmp_path):
    tok = _lm_files(tmp_path)
    frames = []
    for f in [{"t": 0.9}, {"h": 0.9}, {"e": 0.9}] + [{c: 0.25, "<blk>": 0.7} for c in " light"]:
        frames += [f, {"<blk>": 0.9}]
    logits = _logits(tok, frames)  # "light" is said, but the blank outweighs each of its letters
    plain = LexiconBeamSearch(tok, tmp_path / "lexicon.txt", tmp_path / "lm.arpa", lm_weight=0.0)
    penalised = LexiconBeamSearch(tok, tmp_path / "lexicon.txt", tmp_path / "lm.arpa", lm_weight=0.0,
                                  blank_penalty=4.0)
    assert plain(logits) != "the light" and penalised(logits) == "the light"


def test_pseudo_labels_decoded_with_the_lm_from_the_cache(tmp_path):
    """kd_pseudo_lm's targets: the teacher's cached top-k posteriors, beam-searched with the word LM,
    spell "the light" where the greedy 1-best of the same cache says "the lught"; transcribed
    utterances keep their transcripts."""
    tok = _lm_files(tmp_path)
    spelled = [{"t": 0.9}, {"h": 0.9}, {"e": 0.9}, {" ": 0.9}, {"l": 0.9}, {"u": 0.6, "i": 0.35},
               {"g": 0.9}, {"h": 0.9}, {"t": 0.9}]
    logp = _logits(tok, [f for s in spelled for f in (s, {"<blk>": 0.9})]).log_softmax(-1).numpy()
    k = 4
    indices = np.argsort(-logp, axis=1)[:, :k]
    cache_dir = tmp_path / "cache"
    write_meta(cache_dir, cache_meta(teacher_sha="t", teacher_config={}, vocabulary=tok.tokens,
                                     frontend={"frame_shift_ms": 10.0},
                                     cmvn_sha="c", subsampling=4, k=k, views={}))
    writer = ShardWriter(cache_dir, 0, len(tok), k)
    for utt in ("heard", "read"):
        writer.add(PosteriorCache.key(utt, "sha"), np.take_along_axis(logp, indices, 1), indices)
    writer.close()
    write_index(cache_dir, [[PosteriorCache.key(utt, "sha") for utt in ("heard", "read")]], parts=1)
    full = topk_log_probs(np.take_along_axis(logp, indices, 1), indices, len(tok))
    assert torch.allclose(full.logsumexp(-1), torch.zeros(len(logp)), atol=1e-4)  # a distribution per frame

    targets = CachedTargets([PosteriorCache(cache_dir)], pseudo_labels="unlabeled")
    assert tok.decode(targets("heard", "sha", labelled=False)["tokens"].tolist()) == "the lught"  # greedy
    search = LexiconBeamSearch(tok, tmp_path / "lexicon.txt", tmp_path / "lm.arpa", lm_weight=1.0)
    utterances = [("heard", "sha", False), ("read", "sha", True)]
    assert targets.decode_one_bests(utterances, search, tok.encode, len(tok)) == 1
    item = targets("heard", "sha", labelled=False)
    assert tok.decode(item["tokens"].tolist()) == "the light" and item["pseudo"]
    assert "tokens" not in targets("read", "sha", labelled=True)


def test_lm_pseudo_labels_need_teacher_1best_targets():
    with pytest.raises(ConfigError, match="pseudo_lm_weight"):
        FrameKD(hard_targets="transcripts", pseudo_lm_weight=1.0)
    with pytest.raises(ConfigError, match="pseudo_lm_weight"):
        FrameKD(hard_targets="unlabeled", pseudo_lm_weight=-1.0)
    assert FrameKD(hard_targets="unlabeled", pseudo_lm_weight=1.0).pseudo_labels == "unlabeled"
