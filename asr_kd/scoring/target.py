"""Distil to a budget: the device budget of ``target`` (conf/config.yaml), which candidate students can
meet it before training (bounds) and after (measured), and which one wins. Pure functions of numbers:
asr_kd.stages.plan builds the candidates and their bounds, stage score gathers the measurements.

``target.json`` (written by stage score, checked by :func:`check_contract`)::

    {"budget": {"size_mb", "latency_ms", "rtf", "threads", "max_hours"},
     "rtf_threads": 1,
     "candidates": [{"name", "student", "chunk_frames", "params", "projected_s", "status", "reason",
                     "graph", "size_mb", "latency_ms", "rtf", "dev_wer",
                     "graphs": {"fp32" | "int8": {"decode", "size_mb", "latency_ms", "rtf"}}}],
     "winner": null | {"name", "graph", "decode", "export_dir", "file", "dev_wer", "size_mb",
                       "latency_ms", "rtf", "why"},
     "message"}

Keys, once:

- ``budget``: the limits (``null``: none); ``rtf_threads``: the threads the RTF was measured on
  (stage export decodes on one onnxruntime thread, whatever ``budget.threads`` says).
- ``status``: ``dropped`` (before training: its bounds miss the budget, or ``max_hours`` left no time),
  ``stopped`` (early stopping at its first dev evaluation), ``missed`` (its measured numbers miss the
  budget), ``met``, or ``absent`` (kept, but no model or export was found); ``reason`` says why
  (``null`` when met).
- ``graph``: ``fp32`` or ``int8``, the graph it deploys (fp32 when that meets the budget, else int8 when
  that does); ``size_mb``, ``latency_ms``, ``rtf``: that graph's measured file size (MB, 1e6 bytes),
  algorithmic latency (ms) and worst RTF over the test sets; before training ``latency_ms`` is the
  bound (exact) and ``size_mb`` ``null``. ``dev_wer``: the last dev evaluation of its training log
  (never a test set). ``projected_s``: its projected training time (steps x ``target.step_seconds``).
- ``winner``: the lowest ``dev_wer`` among the candidates that met the budget (ties: smaller graph,
  then lower latency, then name), with its export folder and graph file; ``null`` when none met it,
  and ``message`` then says so in one line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from asr_kd.errors import ConfigError
from asr_kd.utils import read_jsonl

__all__ = ["Target", "Candidate", "Measured", "LIMITS", "GRAPH_SUFFIXES", "bound_misses",
           "choose_candidates", "dev_wers", "last_dev_wer", "hopeless", "select", "check_contract",
           "target_markdown"]

#: The limits of a budget: ``target.<key>`` -> the measured number it bounds.
LIMITS = ("size_mb", "latency_ms", "rtf")
#: Decode suffixes of an exported candidate per graph (sherpa-onnx for the chunked Conformer, asr_kd's
#: runner for the Emformer; asr_kd.stages.export).
GRAPH_SUFFIXES = {"fp32": ("_sherpa", "_onnx"), "int8": ("_sherpa_int8", "_int8")}
#: Bytes per parameter of each graph: the lower bound of its file size before training.
_BYTES = {"fp32": 4, "int8": 1}
_UNITS = {"size_mb": "MB", "latency_ms": "ms", "rtf": "x real time"}


@dataclass
class Target:
    """``target`` of conf/config.yaml, typed and checked (the defaults live there)."""

    size_mb: float | None
    latency_ms: float | None
    rtf: float | None
    threads: int
    max_hours: float | None
    like: str
    students: list[str]
    chunks: list[int]
    int8: list[bool]
    step_seconds: float
    early_stop: float | None

    def __post_init__(self):
        for key in (*LIMITS, "max_hours", "step_seconds", "early_stop", "threads"):
            value = getattr(self, key)
            if value is not None and value <= 0:
                raise ConfigError(f"{key} must be > 0 (null: no limit), got {value}")
        if self.early_stop is not None and self.early_stop < 1:
            raise ConfigError(f"early_stop is a ratio to the best candidate's dev WER, >= 1; "
                              f"got {self.early_stop}")
        if not self.students or not self.chunks or not self.int8:
            raise ConfigError("students, chunks and int8 each need at least one value")
        if any(c < 1 for c in self.chunks):
            raise ConfigError(f"chunks are chunk_frames (40 ms encoder frames), >= 1; "
                              f"got {list(self.chunks)}")

    @property
    def active(self) -> bool:
        """Whether a budget is set at all (all null: the run has no candidates and nothing changes)."""
        return any(getattr(self, key) is not None for key in (*LIMITS, "max_hours"))

    @property
    def graphs(self) -> list[str]:
        """The graphs a candidate may deploy, fp32 first."""
        return [g for g in ("fp32", "int8") if (g == "int8") in self.int8]

    @property
    def budget(self) -> dict:
        """target.json's ``budget``: the limits and the device's threads."""
        return {"size_mb": self.size_mb, "latency_ms": self.latency_ms, "rtf": self.rtf,
                "threads": self.threads, "max_hours": self.max_hours}

    def describe(self) -> str:
        """The limits in words: ``size_mb <= 0.5 MB, latency_ms <= 400 ms``."""
        return ", ".join(f"{k} <= {getattr(self, k):g} {_UNITS[k]}" for k in LIMITS
                         if getattr(self, k) is not None) or "no device limit"


@dataclass(frozen=True)
class Candidate:
    """A candidate student before training: what is known from its config alone."""

    name: str
    student: str  # the student/ option
    chunk_frames: int
    params: int  # with a 2-token head: a lower bound of the trained model's
    latency_ms: float  # algorithmic latency (exact before training)
    projected_s: float  # steps x target.step_seconds
    dropped: str | None = None  # why it is not trained (None: trained)


@dataclass(frozen=True)
class Measured:
    """A trained candidate's numbers: dev WER (last evaluation), early stop, and per graph
    (``fp32``/``int8``) its decode name, file size, latency and worst RTF over the test sets."""

    dev_wer: float | None
    stopped: str | None = None
    graphs: dict[str, dict] = field(default_factory=dict)


def _misses(target: Target, numbers: dict) -> list[str]:
    """``size_mb 1.41 MB > 0.5 MB`` for every limit ``numbers`` exceeds."""
    limits = {k: getattr(target, k) for k in LIMITS if getattr(target, k) is not None}
    return [f"{k} {numbers[k]:.3g} > {limit:g} {_UNITS[k]}" for k, limit in limits.items()
            if numbers.get(k) is not None and numbers[k] > limit]


def bound_misses(target: Target, params: int, latency_ms: float) -> list[str]:
    """Why a candidate cannot meet ``target`` whatever its training: its latency, or a size lower bound
    (``params`` x 1 byte for int8, x 4 for fp32; the smallest graph it may deploy) already over."""
    graph = target.graphs[-1]  # int8 when allowed: the smallest
    size = params * _BYTES[graph] / 1e6
    misses = _misses(target, {"latency_ms": latency_ms})
    if target.size_mb is not None and size > target.size_mb:
        misses.append(f"size_mb >= {size:.3g} (params x {_BYTES[graph]} byte, {graph}) "
                      f"> {target.size_mb:g} MB")
    return misses


def choose_candidates(target: Target, candidates: Sequence[Candidate]) -> list[Candidate]:
    """``candidates`` with ``dropped`` set for those that cannot meet the budget (:func:`bound_misses`)
    or do not fit in ``max_hours``; the survivors first, most parameters then longest chunk first (the
    likeliest to be most accurate: trained first, they set the bar of early stopping)."""
    out = []
    for c in candidates:
        misses = bound_misses(target, c.params, c.latency_ms)
        out.append(Candidate(**{**asdict(c), "dropped": "; ".join(misses) or None}))
    out.sort(key=lambda c: (c.dropped is not None, -c.params, -c.chunk_frames, c.name))
    used = 0.0  # projected seconds of the candidates kept so far
    for i, c in enumerate(out):
        if c.dropped is None and target.max_hours is not None:
            if used + c.projected_s > 3600 * target.max_hours:
                out[i] = Candidate(**{**asdict(c), "dropped": f"max_hours ({3600 * target.max_hours:.0f} s): "
                                      f"{c.projected_s:.0f} s projected after {used:.0f} s"})
            else:
                used += c.projected_s
    return out


def dev_wers(rows: Sequence[dict]) -> dict[int, float]:
    """step -> dev WER of a ``train_log.jsonl`` (a resumed run's repeated steps keep their last value)."""
    return {r["step"]: r["dev_wer"] for r in rows if "dev_wer" in r}


def last_dev_wer(train_log: Path) -> tuple[float, int] | None:
    """``(dev WER, step)`` of the last evaluation in a model's ``train_log.jsonl`` (None: none yet)."""
    wers = dev_wers(read_jsonl(train_log)) if train_log.exists() else {}
    return (wers[max(wers)], max(wers)) if wers else None


def hopeless(wer: float, best: float | None, ratio: float | None) -> bool:
    """Whether a candidate at ``wer`` is far behind the ``best`` earlier candidate at the same step."""
    return ratio is not None and best is not None and wer > ratio * best


def _choose_graph(target: Target, m: Measured) -> tuple[str | None, list[str]]:
    """The graph of ``m`` that meets every limit (fp32, else int8), or None and every graph's misses."""
    reasons = []
    for graph in target.graphs:
        numbers = m.graphs.get(graph)
        if numbers is None:
            reasons.append(f"{graph}: not exported")
            continue
        misses = _misses(target, numbers)
        if not misses:
            return graph, []
        reasons.append(f"{graph}: {', '.join(misses)}")
    return None, reasons


def select(target: Target, candidates: Sequence[Candidate], measured: dict[str, Measured]) -> dict:
    """target.json (module docstring): every candidate met or missed with its numbers and reason, and
    the winner: the best dev WER among those whose measured numbers meet the budget."""
    rows = []
    for c in candidates:
        row = {"name": c.name, "student": c.student, "chunk_frames": c.chunk_frames, "params": c.params,
               "projected_s": c.projected_s, "status": "dropped", "reason": c.dropped, "graph": None,
               "size_mb": None, "latency_ms": c.latency_ms, "rtf": None, "dev_wer": None, "graphs": {}}
        m = measured.get(c.name)
        if c.dropped is None and m is None:
            row.update(status="absent", reason="trained candidate without a model or export in exp_dir")
        elif c.dropped is None:
            graph, reasons = _choose_graph(target, m)
            shown = m.graphs.get(graph or target.graphs[0], {})
            row.update(graphs=m.graphs, dev_wer=m.dev_wer, graph=graph,
                       **{k: shown.get(k, row[k]) for k in LIMITS})
            if m.stopped:
                row.update(status="stopped", reason=m.stopped, graph=None)
            elif graph is None:
                row.update(status="missed", reason="; ".join(reasons))
            elif m.dev_wer is None:
                row.update(status="missed", reason="no dev evaluation in its training log", graph=None)
            else:
                row.update(status="met", reason=None)
        rows.append(row)
    met = sorted((r for r in rows if r["status"] == "met"),
                 key=lambda r: (r["dev_wer"], r["size_mb"], r["latency_ms"], r["name"]))
    winner = None
    if met:
        best = met[0]
        decode = best["graphs"][best["graph"]]["decode"]
        why = (f"lowest dev WER ({100 * best['dev_wer']:.2f} %) of the {len(met)} candidate(s) that meet "
               f"{target.describe()} (measured, {best['graph']} graph)")
        if best["graph"] == "int8" and "fp32" in target.graphs:
            why += "; its fp32 graph misses the budget"
        winner = {"name": best["name"], "graph": best["graph"], "decode": decode,
                  "export_dir": f"export/{best['name']}",
                  "file": "model.int8.onnx" if best["graph"] == "int8" else "model.onnx",
                  **{k: best[k] for k in ("dev_wer", *LIMITS)}, "why": why}
        message = f"target: {best['name']} ({best['graph']}) wins: {why}"
    else:
        counts = {s: sum(r["status"] == s for r in rows) for s in ("dropped", "stopped", "missed", "absent")}
        message = (f"target: no candidate meets {target.describe()} ("
                   + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
                   + "); loosen the budget or widen target.students / target.chunks; see target.json")
    result = {"budget": target.budget, "rtf_threads": 1, "candidates": rows, "winner": winner,
              "message": message}
    check_contract(result)
    return result


_KEYS = {"budget", "rtf_threads", "candidates", "winner", "message"}
_ROW_KEYS = {"name", "student", "chunk_frames", "params", "projected_s", "status", "reason", "graph",
             "size_mb", "latency_ms", "rtf", "dev_wer", "graphs"}
_WINNER_KEYS = {"name", "graph", "decode", "export_dir", "file", "dev_wer", *LIMITS, "why"}
_STATUSES = {"dropped", "stopped", "missed", "met", "absent"}


def check_contract(data: dict) -> None:
    """Raise ValueError unless ``data`` is a target.json as the module docstring states it (keys,
    statuses, and a winner that is a met candidate, null when none met)."""
    if set(data) != _KEYS:
        raise ValueError(f"target.json keys {sorted(data)} != {sorted(_KEYS)}")
    for row in data["candidates"]:
        if set(row) != _ROW_KEYS or row["status"] not in _STATUSES:
            raise ValueError(f"target.json candidate {row.get('name')!r}: keys {sorted(row)}, status "
                             f"{row.get('status')!r}")
    met = {r["name"] for r in data["candidates"] if r["status"] == "met"}
    winner = data["winner"]
    if (winner is None) != (not met) or (winner is not None and (set(winner) != _WINNER_KEYS
                                                                 or winner["name"] not in met)):
        raise ValueError(f"target.json winner {winner and winner.get('name')!r} is not one of the met "
                         f"candidates {sorted(met)}")


def target_markdown(data: dict) -> list[str]:
    """The report's section on the budget: the outcome, then every candidate in a table."""
    def number(value, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    lines = ["## Distil to a budget", "", data["message"], "",
             "| candidate | status | graph | size MB | latency ms | RTF | dev WER % | reason |",
             "|---|---|---|---:|---:|---:|---:|---|"]
    for r in data["candidates"]:
        wer = None if r["dev_wer"] is None else 100 * r["dev_wer"]
        lines.append(f"| {r['name']} | {r['status']} | {r['graph'] or '-'} | {number(r['size_mb'], '.3f')} "
                     f"| {number(r['latency_ms'], '.0f')} | {number(r['rtf'], '.4f')} | {number(wer, '.2f')} "
                     f"| {r['reason'] or ''} |")
    if data["winner"] is not None:
        w = data["winner"]
        lines += ["", f"Deploy: `{w['export_dir']}/{w['file']}` (decodes: `decode/{w['decode']}/`)."]
    if data["budget"]["threads"] != data["rtf_threads"]:
        lines += ["", f"RTF measured on {data['rtf_threads']} thread, not the {data['budget']['threads']} "
                      "of target.threads."]
    return [*lines, ""]
