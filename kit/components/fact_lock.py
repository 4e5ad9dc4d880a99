"""Fact-locked decoding: a figure can only be written as a copy of one the prompt holds.

While the model writes, the "fact run" at the end of its text — the word being written, made of letters, digits
and ``$.,:/@+%#_-`` — is watched. Once it holds a digit or an ``@`` it is *locked*: it must be the beginning of a
figure, date, id, phone number or e-mail address that occurs in the prompt (the documents, the question, the
conversation, the system prompt), in the same or an equivalent spelling (``$1,649.00``, ``1649``, ``1,649``; a
date's year, month and day on their own). A token that would make the locked run the start of nothing in the prompt
is never chosen; a locked run that is not yet a whole figure can only be continued, not ended. Plain prose is
untouched, and so are citations (``[2]``), list markers at the start of a line and ordinal or unit endings after a
whole figure (``14th``, ``3in``).

The check runs as a llama.cpp logits processor, one per answer (the prompt decides what may be copied). It looks
at the few tokens that carry a digit or an ``@`` (found once per model file and cached) and, while a figure is
half written, at the tokens that continue one of the figures it can become. When nothing in the prompt can
complete what was written (the model found a way round, e.g. a unit glued to a number), the lock lets go for that
run rather than trap the model; the claim check after generation is the second line.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from kit.components.models import cache_dir
from kit.files import replace_text

logger = logging.getLogger(__name__)

RUN_CHARS = r"[A-Za-z0-9$€£.,:/@+%#_-]"
TRAILING_RUN = re.compile(RUN_CHARS + r"*\Z")
RUNS = re.compile(RUN_CHARS + "+")
CLOSING = ".,;:!?"
NUMBER = re.compile(r"([$€£]?)((?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?)(%?)")
ENDING = re.compile(r"[A-Za-z.,;:!?-]*\Z")  # after a whole figure: "th", "in", "." — not part of the figure
SPECIAL = re.compile(r"[0-9@]")
MAX_CANDIDATES = 64  # figures a half-written run may become, looked at per step


def locked(run: str) -> bool:
    """Whether a run is a figure being written: it holds an ASCII digit or an @."""
    return SPECIAL.search(run) is not None


def variants(run: str) -> set[str]:
    """Spellings of one figure that mean the same: with and without currency sign, thousands commas, '.00';
    a date's or range's parts on their own."""
    run = run.strip(CLOSING)
    out = {run} if run else set()
    whole = NUMBER.fullmatch(run)
    if whole:
        out |= _number_forms(*whole.groups())
    elif not re.search(r"[A-Za-z@]", run):  # 2027-03-14, 9:00, 3/5, 555-0187: each part on its own too
        for part in re.split(r"[-/:]", run):
            m = NUMBER.fullmatch(part)
            if m:
                out |= _number_forms(*m.groups())
    else:
        unit = re.fullmatch(r"(\d+(?:\.\d+)?)-[A-Za-z]+", run)  # "3-season", "4-star": the number alone too
        if unit:
            out |= _number_forms("", unit.group(1), "")
    return out


def _number_forms(sign: str, digits: str, percent: str) -> set[str]:
    try:
        value = Decimal(digits.replace(",", ""))
    except InvalidOperation:
        return {f"{sign}{digits}{percent}"}
    bodies = {digits, digits.replace(",", "")}
    if value == value.to_integral_value():
        whole = int(value)
        bodies |= {str(whole), f"{whole:,}", f"{whole}.00", f"{whole:,}.00"}
    else:
        bodies |= {f"{value:f}", f"{value:,f}"}
    signs = {sign, "", "$"}  # a catalogue's "329.00" is written "$329" in an answer
    return {f"{s}{b}{p}" for s in signs for b in bodies for p in {percent, ""}}


class Figures:
    """Every figure a text holds, in all its equivalent spellings, with prefix look-ups."""

    def __init__(self, text: str) -> None:
        found: set[str] = set()
        for m in RUNS.finditer(text):
            if locked(m.group()):
                found |= variants(m.group())
        self.whole = found
        self.sorted = sorted(found)

    def starting_with(self, prefix: str) -> list[str]:
        """The figures that begin with ``prefix`` (at most ``MAX_CANDIDATES``)."""
        i = bisect.bisect_left(self.sorted, prefix)
        out: list[str] = []
        while i < len(self.sorted) and self.sorted[i].startswith(prefix) and len(out) < MAX_CANDIDATES:
            out.append(self.sorted[i])
            i += 1
        return out

    def allows(self, text: str, run: str) -> bool:
        """Whether ``run``, at the end of ``text``, may stand: unlocked, free, or the start of a figure here."""
        return (
            not locked(run)
            or free(text, run)
            or marker_start(text, run)
            or bool(self.starting_with(run))
            or self.finished(text, run)
        )

    def finished(self, text: str, run: str) -> bool:
        """Whether the locked ``run`` holds a whole figure (perhaps followed by an ending such as 'th' or '.')."""
        return free(text, run) or run in self.whole or ENDING.sub("", run) in self.whole


def free(text: str, run: str) -> bool:
    """A citation's number ("[2"), or a whole list marker at the start of a line ("\n1."): never a figure."""
    before = text[: len(text) - len(run)]
    if re.fullmatch(r"\d{1,2}\]?", run) and before.endswith("["):
        return True
    return re.fullmatch(r"\d{1,2}[.)]", run) is not None and _line_start(before)


def marker_start(text: str, run: str) -> bool:
    """One or two digits at the start of a line after the first: a list marker, if a '.' or ')' follows."""
    return re.fullmatch(r"\d{1,2}", run) is not None and _line_start(text[: len(text) - len(run)])


def _line_start(before: str) -> bool:
    return re.search(r"\n[ \t]*\Z", before) is not None


def trailing_run(text: str) -> str:
    """The fact run at the end of ``text``."""
    m = TRAILING_RUN.search(text)
    return m.group() if m else ""


class FactLock:
    """A llama.cpp logits processor for one answer: the prompt's figures are the only ones the answer may write."""

    def __init__(
        self,
        prompt: str,
        special: Sequence[tuple[int, str]],
        piece: Callable[[int], bytes],
        tokenize: Callable[[str], list[int]],
    ) -> None:
        import numpy as np

        self.figures = Figures(prompt)
        self.special = special  # (id, text) of every token holding a digit or an @
        self.special_ids = np.array([i for i, _ in special], dtype=np.int64)
        self.piece, self.tokenize = piece, tokenize
        self.start: int | None = None
        self.seen = 0
        self.raw = b""
        self.text = ""

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import numpy as np

        if self.start is None:
            self.start = self.seen = len(input_ids)
        for token in input_ids[self.seen :]:
            self.raw += self.piece(int(token))
        self.seen = len(input_ids)
        self.text = self.raw[-512:].decode("utf-8", "ignore")
        run = trailing_run(self.text)
        if locked(run) and not self.figures.finished(self.text, run):
            keep = self._continuations(run) + (self._markers() if marker_start(self.text, run) else [])
            if keep:
                kept = scores[keep].copy()
                scores[:] = -np.inf
                scores[keep] = kept
                return scores
            logger.debug("fact lock: nothing here completes %r; the run is let go", run)
        banned = [
            i for i, text in self.special if not self.figures.allows(self.text + text, trailing_run(self.text + text))
        ]
        if banned:
            scores[banned] = -np.inf
        return scores

    def _continuations(self, run: str) -> list[int]:
        """Tokens that take a half-written figure one step towards a figure of the prompt."""
        ids: set[int] = set()
        for figure in self.figures.starting_with(run):
            rest = figure[len(run) :]
            if not rest:
                continue
            tokens = self.tokenize(rest)
            if tokens:
                ids.add(tokens[0])
        ids |= {i for i, text in self.special if self.figures.starting_with(run + text)}
        return sorted(
            i for i in ids if self.figures.allows(self.text + self._text(i), trailing_run(self.text + self._text(i)))
        )

    def _markers(self) -> list[int]:
        """The tokens that end a list marker: '.' and ')'."""
        return [ids[0] for ids in (self.tokenize("."), self.tokenize(")")) if ids]

    def _text(self, token: int) -> str:
        return self.piece(token).decode("utf-8", "ignore")


def special_tokens(gguf_path: Path, texts: Callable[[], Iterable[tuple[int, str]]]) -> list[tuple[int, str]]:
    """(id, text) of the model's tokens holding an ASCII digit or an @; found once per model file and cached."""
    import json

    stat = gguf_path.stat()
    key = hashlib.sha256(f"{gguf_path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}:fact-lock".encode()).hexdigest()
    cached = cache_dir() / "fact-lock" / f"{key[:32]}.json"
    if cached.is_file():
        return [(int(i), str(t)) for i, t in json.loads(cached.read_text(encoding="utf-8"))]
    found = [(i, t) for i, t in texts() if SPECIAL.search(t)]
    replace_text(cached, json.dumps(found), cache=True)  # a read-only cache: found again next start
    return found
