"""Per-token alignment of an offline teacher's posteriors to a streaming student's emissions.

An offline teacher spells a word out across it, from its first frame on, because it has heard the
whole word; a streaming student can only commit to a letter once it has heard enough to tell the
words apart, so it waits and then spells the word out quickly (on FSDD its CTC-only student emits
the first letter of a word 6.5 frames after the teacher and the last one 2.3 frames after). No single
shift fits both ends of a word, and frame KD at the teacher's times pushes the student to guess early
("siven", "eix"). Here each of the teacher's spikes is matched where *this* student emits that
token: the best CTC path of the teacher's greedy 1-best through the student's own (detached) scores,
with every token kept ``min_delay .. max_delay`` frames after the teacher's spike (a Viterbi pass over
the batch, :func:`constrained_path`). Student frames in a token's span take the teacher's
distribution at that spike; the frames between two spikes take the teacher's frames between them,
stretched or squeezed linearly; a student gap facing no teacher gap gets no target. Early in
training a student's best path is poor and KD on it would firm it up (Viterbi training), so
:func:`student_agrees` lets KD wait, per utterance, until the student's greedy 1-best is the teacher's.

The path is computed here rather than with torchaudio's ``forced_align``, which takes no per-token
windows and (torchaudio 2.11) can return a worse path than the best when scores tie exactly.
"""

from __future__ import annotations

import numpy as np
import torch

from asr_kd.models.ctc import collapse, ctc_greedy

__all__ = ["teacher_best", "teacher_spikes", "constrained_path", "warp_targets", "student_agrees"]


def teacher_best(values: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """The teacher's best token per frame, (B, T), from its top-k ``values`` / ``indices`` (B, T, K)."""
    return indices.gather(-1, values.argmax(-1, keepdim=True))[..., 0]


def teacher_spikes(best: np.ndarray) -> list[tuple[int, int, int]]:
    """``(token, first frame, last frame)`` of each run of one non-blank token in the teacher's
    per-frame best tokens ``best`` (T,) (blank 0): the greedy 1-best with its frames."""
    if len(best) == 0:
        return []
    change = np.flatnonzero(np.diff(best)) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [len(best)]]) - 1
    return [(int(best[a]), int(a), int(b)) for a, b in zip(starts, ends, strict=True) if best[a] != 0]


def constrained_path(
    log_probs: np.ndarray, lengths: np.ndarray, tokens: list[list[int]], earliest: list[list[int]],
    latest: list[list[int]],
) -> tuple[np.ndarray, np.ndarray]:
    """Best CTC path (blank 0) of each utterance's ``tokens`` through ``log_probs`` (B, T, V), token k
    allowed only on frames ``earliest[k] .. latest[k]``. Returns ``(states, found)``: (B, T) the
    position in the blank-interleaved sequence ``[blank, y1, blank, y2, ..., blank]`` at each frame
    (token k is state 2k + 1), and (B,) whether a path exists within the windows and ``lengths``."""
    b, t, _ = log_probs.shape
    s = 2 * max((len(y) for y in tokens), default=0) + 1
    labels = np.zeros((b, s), dtype=np.int64)
    allowed = np.zeros((b, t, s), dtype=bool)
    allowed[:, :, 0::2] = True
    skip = np.zeros((b, s), dtype=bool)
    frames = np.arange(t)
    for i, (y, lo, hi) in enumerate(zip(tokens, earliest, latest, strict=True)):
        labels[i, 1: 2 * len(y): 2] = y
        allowed[i, :, 2 * len(y) + 1:] = False
        for k in range(len(y)):
            allowed[i, :, 2 * k + 1] = (frames >= lo[k]) & (frames <= hi[k])
            skip[i, 2 * k + 1] = k > 0 and y[k] != y[k - 1]
    emit = np.where(allowed, np.take_along_axis(log_probs, labels[:, None, :].repeat(t, 1), 2), -np.inf)
    alpha = np.full((b, s), -np.inf)
    alpha[:, :2] = emit[:, 0, :2]
    back = np.zeros((b, t, s), dtype=np.int8)
    for step in range(1, t):
        stay, one = alpha, np.concatenate([np.full((b, 1), -np.inf), alpha[:, :-1]], 1)
        two = np.where(skip, np.concatenate([np.full((b, 2), -np.inf), alpha[:, :-2]], 1), -np.inf)
        moves = np.stack([stay, one, two], 2)
        move = moves.argmax(2)
        best = np.take_along_axis(moves, move[..., None], 2)[..., 0]
        live = step < lengths
        back[:, step] = np.where(live[:, None], move, 0)
        alpha = np.where(live[:, None], best + emit[:, step], alpha)
    ends = np.array([2 * len(y) for y in tokens])
    last_token = np.maximum(ends - 1, 0)
    end_scores = np.stack([alpha[np.arange(b), ends], alpha[np.arange(b), last_token]], 1)
    state = np.where(end_scores[:, 0] >= end_scores[:, 1], ends, last_token)
    found = np.isfinite(end_scores.max(1))
    states = np.zeros((b, t), dtype=np.int64)
    for step in range(t - 1, -1, -1):
        states[:, step] = state
        state = state - back[np.arange(b), step, state]
    return states, found


def warp_targets(
    student_logits: torch.Tensor, lengths: torch.Tensor, teacher_values: torch.Tensor,
    teacher_indices: torch.Tensor, min_delay: int, max_delay: int, active: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A batch's top-k targets moved onto each student's emissions (see the module docstring):
    ``(values, indices, usable)``, the first two shaped as the inputs (B, T, K), ``usable`` (B, T) the
    student frames that have a target. An utterance with no path inside the windows (or no spikes)
    keeps its targets delayed by ``min_delay``, as a fixed shift would; so does one that ``active``
    (B,) leaves out (its KD is masked anyway: no path is searched for it)."""
    b, t, _ = teacher_values.shape
    n = lengths.clamp(max=t).cpu().numpy()
    best = teacher_best(teacher_values, teacher_indices).cpu().numpy()
    searched = np.ones(b, dtype=bool) if active is None else active.cpu().numpy()
    spikes = [teacher_spikes(best[i, : n[i]]) if searched[i] else [] for i in range(b)]
    frames = np.tile(np.arange(t) - min_delay, (b, 1)).clip(min=0)
    usable = (np.arange(t)[None] >= min_delay) & (np.arange(t)[None] < n[:, None])
    if any(spikes):
        log_probs = student_logits.detach().float().log_softmax(-1).cpu().numpy()
        states, found = constrained_path(
            log_probs, n, [[y for y, _, _ in sp] for sp in spikes],
            [[first + min_delay for _, first, _ in sp] for sp in spikes],
            [[first + max_delay for _, first, _ in sp] for sp in spikes])
        for i in range(b):
            if spikes[i] and found[i]:
                frames[i], usable[i] = _spread(states[i], spikes[i], int(n[i]), t)
    index = torch.from_numpy(frames).to(teacher_values.device)[..., None].expand_as(teacher_values)
    return (teacher_values.gather(1, index), teacher_indices.gather(1, index),
            torch.from_numpy(usable).to(teacher_values.device))


def student_agrees(
    student_logits: torch.Tensor, lengths: torch.Tensor, teacher_values: torch.Tensor,
    teacher_indices: torch.Tensor,
) -> torch.Tensor:
    """(B,) whether each student's greedy 1-best already equals the teacher's (both from their best token
    per frame, ``lengths`` frames). Early in training a student's best path is poor, and KD on it firms
    up a poor alignment; gated by this, KD starts on an utterance once the student finds its words."""
    n = lengths.clamp(max=teacher_values.shape[1])
    teacher = teacher_best(teacher_values, teacher_indices).tolist()
    student = ctc_greedy(student_logits.detach(), n)
    same = [collapse(row[:m]) == own for row, m, own in zip(teacher, n.tolist(), student, strict=True)]
    return torch.tensor(same, device=student_logits.device)


def _spread(
    states: np.ndarray, spikes: list[tuple[int, int, int]], n: int, t: int
) -> tuple[np.ndarray, np.ndarray]:
    """Teacher frame for each student frame from the student's path ``states`` (see :func:`warp_targets`)."""
    frames = np.zeros(t, dtype=np.int64)
    usable = np.zeros(t, dtype=bool)
    usable[:n] = True
    student_prev, teacher_prev = -1, -1  # last frame of the previous spike, student and teacher
    for k, (_, first, last) in enumerate(spikes):
        span = np.flatnonzero(states[:n] == 2 * k + 1)
        s_first, s_last = int(span[0]), int(span[-1])
        _fill_gap(frames, usable, student_prev + 1, s_first, teacher_prev + 1, first)
        frames[s_first: s_last + 1] = np.minimum(first + np.arange(s_last - s_first + 1), last)
        student_prev, teacher_prev = s_last, last
    _fill_gap(frames, usable, student_prev + 1, n, teacher_prev + 1, n)
    return frames, usable


def _fill_gap(frames: np.ndarray, usable: np.ndarray, s_from: int, s_to: int, t_from: int, t_to: int) -> None:
    """Student frames ``s_from..s_to-1`` between two spikes take the teacher's frames ``t_from..t_to-1``
    stretched or squeezed linearly; no target if the teacher has no frame there."""
    if s_to <= s_from:
        return
    if t_to <= t_from:
        usable[s_from:s_to] = False
        return
    frames[s_from:s_to] = np.rint(np.linspace(t_from, t_to - 1, s_to - s_from)).astype(np.int64)
