"""How sure a WER is: bootstrap confidence intervals and paired tests between systems.

The bootstrap of Bisani and Ney (2004), as in Kaldi's ``compute-wer-bootci`` and
``kaldialign.bootstrap_wer_ci``: draw the test set's blocks with replacement, recompute the corpus
WER (errors of the drawn blocks / their reference words), repeat. A block is an utterance, or, when
the utterances have speakers, a speaker with all of their utterances (a *blocked* bootstrap):
utterances of one speaker are not independent, and resampling them one by one understates the
spread of the WER over speakers.

Every system on one test set is scored on the *same* resamples (:class:`Bootstrap`), which is what
makes the comparison of two systems paired. Intervals are percentile intervals of the resampled
WERs (Kaldi and kaldialign use mean +- 1.96 sd, which agrees on test sets of a useful size).

Arrays: ``errors`` ``(N, K)`` word errors (S + D + I) of N utterances by K systems, ``words``
``(N,)`` reference words, ``blocks`` ``(N,)`` block labels (speakers) or ``None``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = ["Bootstrap", "Comparison", "resample_counts", "pooled_compare"]


def resample_counts(blocks: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """``(resamples, blocks)``: how often each block is drawn in each resample of ``blocks`` draws."""
    draws = rng.integers(0, blocks, size=(resamples, blocks))
    offsets = (np.arange(resamples) * blocks)[:, None]
    return np.bincount((draws + offsets).ravel(), minlength=resamples * blocks).reshape(resamples, blocks)


@dataclass(frozen=True)
class Comparison:
    """System ``a`` against system ``b`` on one test set; ``delta`` = WER(a) - WER(b), a fraction.

    ``ci95``: percentile interval of the resampled deltas; ``p``: two-sided paired bootstrap p-value
    of "no difference"; ``p_improve``: share of resamples where ``a`` has the lower WER (kaldialign's
    "probability of improvement"); ``p_wilcoxon``: Wilcoxon signed-rank test on the per-block WER
    differences (per speaker when blocked, as SCTK's ``sc_stats`` does, else per utterance).
    """

    delta: float
    ci95: tuple[float, float]
    p: float
    p_improve: float
    p_wilcoxon: float

    @property
    def significant(self) -> bool:
        """The 95 % interval excludes zero."""
        return self.ci95[0] > 0 or self.ci95[1] < 0


class Bootstrap:
    """Bootstrap resamples of one test set, shared by its systems (so comparisons are paired).

    ``errors`` maps each system to its ``(N,)`` per-utterance word errors, in the order of ``words``
    and ``blocks``. Deterministic for a given ``seed``.
    """

    def __init__(
        self,
        errors: dict[str, np.ndarray],
        words: np.ndarray,
        blocks: Sequence[object] | None = None,
        resamples: int = 1000,
        seed: int = 0,
    ):
        if resamples < 1:
            raise ValueError(f"the bootstrap needs at least one resample, got resamples={resamples}")
        words = np.asarray(words, dtype=np.float64)
        if not len(words) or (words <= 0).any():
            raise ValueError("the bootstrap needs at least one utterance, each with reference words")
        self.systems = list(errors)
        stacked = np.stack([np.asarray(errors[s], dtype=np.float64) for s in self.systems], axis=1)  # (N, K)
        if stacked.shape[0] != len(words):
            raise ValueError(f"errors have {stacked.shape[0]} utterances but words {len(words)}")
        if blocks is None:
            labels = np.arange(len(words))
        else:
            labels = np.unique(np.asarray(blocks), return_inverse=True)[1]
        if len(labels) != len(words):
            raise ValueError(f"blocks have {len(labels)} labels but there are {len(words)} utterances")
        n_blocks = int(labels.max()) + 1
        self.block_errors = np.zeros((n_blocks, len(self.systems)))  # (B, K)
        np.add.at(self.block_errors, labels, stacked)
        self.block_words = np.bincount(labels, weights=words, minlength=n_blocks)  # (B,)
        self.blocks, self.resamples, self.seed = n_blocks, resamples, seed
        self.wer = dict(zip(self.systems, self.block_errors.sum(0) / self.block_words.sum(), strict=True))
        counts = resample_counts(n_blocks, resamples, np.random.default_rng(seed)).astype(np.float64)
        self.samples = (counts @ self.block_errors) / (counts @ self.block_words)[:, None]  # (R, K)

    def _column(self, system: str) -> np.ndarray:
        if system not in self.systems:
            raise KeyError(f"no system {system!r} in this bootstrap; it has {', '.join(self.systems)}")
        return self.samples[:, self.systems.index(system)]

    def interval(self, system: str, level: float = 0.95) -> tuple[float, float]:
        """The ``level`` percentile interval of ``system``'s corpus WER (fractions)."""
        low, high = np.quantile(self._column(system), [(1 - level) / 2, (1 + level) / 2])
        return float(low), float(high)

    def compare(self, a: str, b: str, level: float = 0.95) -> Comparison:
        """Paired comparison of ``a`` against ``b`` on the shared resamples (see :class:`Comparison`)."""
        k_a, k_b = self.systems.index(a), self.systems.index(b)
        diffs = (self.block_errors[:, k_a] - self.block_errors[:, k_b]) / self.block_words
        return _comparison(self._column(a) - self._column(b), self.wer[a] - self.wer[b], diffs, level)


def _comparison(deltas: np.ndarray, delta: float, diffs: np.ndarray, level: float) -> Comparison:
    """A :class:`Comparison` from the resampled differences ``deltas`` ``(R,)``, the observed one and
    the per-block differences ``diffs`` that the Wilcoxon test ranks."""
    low, high = np.quantile(deltas, [(1 - level) / 2, (1 + level) / 2])
    tail = min((deltas <= 0).sum(), (deltas >= 0).sum())
    return Comparison(
        delta=float(delta),
        ci95=(float(low), float(high)),
        p=float(min(1.0, 2 * (tail + 1) / (len(deltas) + 1))),
        p_improve=float((deltas < 0).mean()),
        p_wilcoxon=float(stats.wilcoxon(diffs).pvalue) if np.any(diffs) else 1.0,
    )


def pooled_compare(strata: Sequence[Bootstrap], a: str, b: str, level: float = 0.95) -> Comparison:
    """``a`` against ``b`` averaged over independent test sets (cross-validation folds): a stratified
    paired bootstrap, each resample drawing every stratum's blocks anew and averaging the strata's WER
    differences, as the mean over folds does. The strata stay fixed: it says whether the mean
    difference on these test sets is beyond the noise of their utterances, not how it would vary over
    other folds. ``p_wilcoxon`` is the signed-rank test of the per-stratum differences."""
    if not strata or len({boot.resamples for boot in strata}) != 1:
        raise ValueError("pooled_compare needs at least one bootstrap, all with the same number of resamples")
    deltas = np.mean([boot._column(a) - boot._column(b) for boot in strata], axis=0)  # (R,)
    per_stratum = np.array([boot.wer[a] - boot.wer[b] for boot in strata])
    return _comparison(deltas, per_stratum.mean(), per_stratum, level)
