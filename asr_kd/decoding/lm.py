"""Beam search with a word n-gram LM and a lexicon: torchaudio's ``ctc_decoder`` (flashlight-text).

The LM is estimated from the training transcripts (:func:`write_arpa`: interpolated absolute
discounting, written as a back-off ARPA file that flashlight's bundled KenLM reads), the lexicon is
their word list spelled in the model's characters. Decoding is then restricted to training words,
which removes the spelling errors a character CTC model makes on a closed vocabulary; words never
seen in training cannot be recognised (:func:`oov_rate` says how many a test set has).

ARPA (back-off) for an interpolated model: a seen n-gram stores the interpolated probability
``max(c(h w) - D, 0) / c(h) + lambda(h) P(w | h')``, its context stores ``lambda(h) = D N1+(h .) / c(h)``
as back-off weight, so an unseen ``w`` gets ``lambda(h) P(w | h')``, as in SRILM's ``-interpolate``.
"""

from __future__ import annotations

import itertools
import math
import os
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from asr_kd.data.dataset import UtteranceDataset
from asr_kd.data.tokenizer import BLANK, CharTokenizer, Tokenizer
from asr_kd.decoding.offline import emissions
from asr_kd.errors import ConfigError
from asr_kd.models.adapters import TeacherAdapter
from asr_kd.models.bundle import Bundle
from asr_kd.scoring.wer import error_rates
from asr_kd.utils import atomic_path

__all__ = ["write_arpa", "write_lexicon", "write_word_lm", "oov_rate", "LexiconBeamSearch", "lm_searches",
           "tune_lm_weight"]

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
_LOG10_ZERO = -99.0  # ARPA's "never": the probability of predicting <s>


def _ngram_counts(sentences: Iterable[str], order: int) -> list[Counter]:
    """``counts[n - 1][(w1, ..., wn)]`` over sentences padded with ``<s>`` and ``</s>``."""
    counts = [Counter() for _ in range(order)]
    for sentence in sentences:
        words = [BOS, *sentence.split(), EOS]
        for n in range(1, order + 1):
            for i in range(len(words) - n + 1):
                gram = tuple(words[i : i + n])
                if gram != (BOS,):
                    counts[n - 1][gram] += 1
    return counts


def write_arpa(
    sentences: Sequence[str], path: str | os.PathLike, order: int = 3, discount: float = 0.7
) -> None:
    """Estimate a word ``order``-gram LM on ``sentences`` (normalised text) and write it as ARPA."""
    if not 1 <= order <= 6:
        raise ConfigError(f"LM order must be 1..6, not {order}")
    if not 0 < discount < 1:
        raise ConfigError(f"absolute discount must be in (0, 1), not {discount}")
    counts = _ngram_counts(sentences, order)
    if not counts[0]:
        raise ValueError("no training text to estimate the LM from")
    # Unigrams: discounted counts, the freed mass spread uniformly over the vocabulary and <unk>.
    total = sum(counts[0].values())
    vocab = sorted(w for (w,) in counts[0])
    freed = discount * len(vocab) / total
    probs: list[dict[tuple, float]] = [{}]
    for w in vocab:
        probs[0][(w,)] = (counts[0][(w,)] - discount) / total + freed / (len(vocab) + 1)
    probs[0][(UNK,)] = freed / (len(vocab) + 1)
    backoffs: list[dict[tuple, float]] = [{} for _ in range(order)]
    for n in range(2, order + 1):
        context_total: dict[tuple, int] = defaultdict(int)
        context_types: dict[tuple, int] = defaultdict(int)
        for gram, c in counts[n - 1].items():
            context_total[gram[:-1]] += c
            context_types[gram[:-1]] += 1
        level = {}
        for gram, c in counts[n - 1].items():
            h = gram[:-1]
            lam = discount * context_types[h] / context_total[h]
            level[gram] = (c - discount) / context_total[h] + lam * _prob(probs, backoffs, gram[1:])
        for h in context_total:
            backoffs[n - 2][h] = discount * context_types[h] / context_total[h]
        probs.append(level)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        sizes = [len(probs[0]) + 1, *(len(level) for level in probs[1:])]  # +1: <s>
        f.write("\\data\\\n" + "".join(f"ngram {n}={size}\n" for n, size in enumerate(sizes, 1)))
        for n in range(1, order + 1):
            f.write(f"\n\\{n}-grams:\n")
            if n == 1:
                f.write(f"{_LOG10_ZERO}\t{BOS}" + (f"\t{math.log10(backoffs[0][(BOS,)]):.6f}\n"
                                                   if order > 1 and (BOS,) in backoffs[0] else "\n"))
            for gram, p in sorted(probs[n - 1].items()):
                line = f"{math.log10(p):.6f}\t{' '.join(gram)}"
                if n < order and gram in backoffs[n - 1]:
                    line += f"\t{math.log10(backoffs[n - 1][gram]):.6f}"
                f.write(line + "\n")
        f.write("\n\\end\\\n")


def _prob(probs: list[dict], backoffs: list[dict], gram: tuple) -> float:
    """``P(w | h)`` of the model estimated so far (orders up to ``len(gram)``), backing off."""
    n = len(gram)
    if gram in probs[n - 1]:
        return probs[n - 1][gram]
    if n == 1:
        return probs[0][(UNK,)]
    return backoffs[n - 2].get(gram[:-1], 1.0) * _prob(probs, backoffs, gram[1:])


def write_lexicon(words: Iterable[str], tokenizer: Tokenizer, path: str | os.PathLike) -> list[str]:
    """``word w o r d |`` per line (``|``: the word boundary); returns the words kept, sorted.

    Words with a character outside the vocabulary are left out (they could never be spelled).
    """
    kept = sorted({w for w in words if all(c in tokenizer.tokens for c in w)})
    with atomic_path(path) as tmp:
        Path(tmp).write_text("".join(f"{w} {' '.join(w)} |\n" for w in kept), encoding="utf-8")
    return kept


def write_word_lm(
    texts: Sequence[str], tokenizer: Tokenizer, folder: str | os.PathLike, order: int = 3,
    discount: float = 0.7,
) -> tuple[Path, Path, list[str]]:
    """The word n-gram LM (``lm.arpa``) and lexicon (``lexicon.txt``) of ``texts`` in ``folder``;
    returns their paths and the lexicon's words."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arpa, lexicon = folder / "lm.arpa", folder / "lexicon.txt"
    write_arpa(texts, arpa, order=order, discount=discount)
    words = write_lexicon({w for t in texts for w in t.split()}, tokenizer, lexicon)
    return arpa, lexicon, words


def oov_rate(texts: Iterable[str], lexicon: Iterable[str]) -> float:
    """Share of running words in ``texts`` not in ``lexicon``."""
    known = set(lexicon)
    words = [w for t in texts for w in t.split()]
    return sum(w not in known for w in words) / max(1, len(words))


class LexiconBeamSearch:
    """``LexiconBeamSearch(tokenizer, lexicon, arpa)(logits (T, V)) -> text``: CTC beam search.

    Character vocabularies only: their space token becomes flashlight's word boundary ``|``.
    ``blank_penalty`` is subtracted from the blank's log-probability at every frame: an
    over-confident model (a distilled one, whose blanks are sharper than its transcripts justify)
    otherwise lets the blank drown words the LM would keep. Softening the posteriors with a
    temperature needs no knob of its own: in the beam search's ranking it is the LM weight scaled.
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        lexicon: str | os.PathLike,
        arpa: str | os.PathLike,
        beam_size: int = 50,
        lm_weight: float = 2.0,
        word_score: float = 0.0,
        blank_penalty: float = 0.0,
    ):
        from torchaudio.models.decoder import ctc_decoder

        if type(tokenizer) is not CharTokenizer or " " not in tokenizer.tokens:
            raise ConfigError("LM decoding (decode.lm) needs a character vocabulary with a space token")
        tokens = ["-" if t == BLANK else "|" if t == " " else t for t in tokenizer.tokens]
        self.blank, self.blank_penalty = tokens.index("-"), blank_penalty
        self.decoder = ctc_decoder(
            lexicon=str(lexicon), tokens=tokens, lm=str(arpa), beam_size=beam_size, lm_weight=lm_weight,
            word_score=word_score, blank_token="-", sil_token="|",
        )

    def __call__(self, logits: torch.Tensor) -> str:
        """Best word sequence for one utterance's ``(T, V)`` logits."""
        if logits.shape[0] == 0:
            return ""
        emissions = logits.float().log_softmax(-1)
        if self.blank_penalty:
            emissions[:, self.blank] -= self.blank_penalty
        emissions = emissions.unsqueeze(0).contiguous()
        hyps = self.decoder(emissions, torch.tensor([logits.shape[0]], dtype=torch.int32))
        return " ".join(hyps[0][0].words) if hyps[0] else ""


def lm_searches(
    train_texts: Sequence[str], tokenizer: Tokenizer, lm_cfg, lm_dir: str | os.PathLike
) -> tuple[Callable[[float, float], LexiconBeamSearch], list[str]]:
    """The lexicon and n-gram LM of ``train_texts`` written to ``lm_dir`` (``decode.lm``: ``order``,
    ``discount``, ``beam_size``, ``word_score``); a maker of beam searches on them by LM weight and
    blank penalty, and the lexicon's words."""
    arpa, lexicon, words = write_word_lm(train_texts, tokenizer, lm_dir, lm_cfg.order, lm_cfg.discount)
    return lambda lm_weight, blank_penalty: LexiconBeamSearch(
        tokenizer, lexicon, arpa, beam_size=lm_cfg.beam_size, lm_weight=lm_weight,
        word_score=lm_cfg.word_score, blank_penalty=blank_penalty), words


def tune_lm_weight(
    bundle: Bundle | TeacherAdapter,
    dataset: UtteranceDataset,
    make_search: Callable[[float, float], Callable[[torch.Tensor], str]],
    weights: list[float],
    penalties: list[float],
) -> tuple[tuple[float, float], dict[tuple[float, float], float]]:
    """The (LM weight, blank penalty) pair of ``weights`` x ``penalties`` with the lowest WER on
    ``dataset`` (the first on ties), and every pair's WER. Each system gets its own: how much the LM
    should count depends on how sharp the acoustic model's posteriors are, which distillation changes."""
    with torch.inference_mode():
        scores = [emissions(bundle, dataset, i)
                  for i in tqdm(range(len(dataset)), desc="tune LM weight", dynamic_ncols=True, leave=False)]
    refs = [u.text for u in dataset.utts]
    wers = {}
    for pair in itertools.product(weights, penalties):
        search = make_search(*pair)
        wers[pair] = error_rates(refs, [search(e) for e in scores])["wer"]
    return min(wers, key=wers.__getitem__), wers
