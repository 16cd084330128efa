"""Open-English sentences for ``domain=open_english``, mined from the docstrings of Python's stdlib.

No text corpus can be downloaded at run time, but every Python installation ships megabytes of
English prose in its standard library's docstrings. We keep sentences that read as plain English:
4 to 16 lowercase alphabetic words (a capital only on the first), no code, no digits. For Python
3.11 this yields several thousand sentences over a vocabulary of several thousand words; the list
is sorted and de-duplicated, so it depends only on the Python version (recorded in the corpus).
"""

from __future__ import annotations

import ast
import re
import sysconfig
import warnings
from functools import lru_cache
from pathlib import Path

__all__ = ["open_english_sentences"]

_SKIP_DIRS = {"test", "tests", "idlelib", "lib2to3", "site-packages", "turtledemo", "ensurepip", "pydoc_data"}
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
_SENTENCE_END = re.compile(r"(?<=[a-z])[.!?](?:\s+|$)")


def _docstrings(path: Path) -> list[str]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return []
    nodes = [tree, *(n for n in ast.walk(tree)
                     if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef))]
    return [doc for n in nodes if (doc := ast.get_docstring(n))]


def _plain_sentence(text: str, min_words: int, max_words: int) -> str | None:
    text = " ".join(text.split())
    if not text or not text[0].isupper() or not text[1:2].islower():
        return None
    words = text.rstrip(".!?").replace(",", "").replace(";", "").split()
    words[0] = words[0].lower()
    if not min_words <= len(words) <= max_words or not all(_WORD.fullmatch(w) for w in words):
        return None
    return " ".join(words)


@lru_cache(maxsize=4)
def open_english_sentences(min_words: int = 4, max_words: int = 16) -> tuple[str, ...]:
    """Sorted unique plain-English sentences (lowercase, no punctuation) from the stdlib docstrings."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    found = set()
    for path in sorted(stdlib.rglob("*.py")):
        if _SKIP_DIRS.intersection(path.relative_to(stdlib).parts):
            continue
        for doc in _docstrings(path):
            for paragraph in doc.split("\n\n"):
                for piece in _SENTENCE_END.split(paragraph):
                    if sentence := _plain_sentence(piece, min_words, max_words):
                        found.add(sentence)
    return tuple(sorted(found))
