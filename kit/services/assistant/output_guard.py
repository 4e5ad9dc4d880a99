"""What an answer may not say, checked as it streams: long spans of the system prompt, personal data the
conversation does not hold, and citations of documents the model was not given.

A reply that quotes a long span of the system prompt, or holds an e-mail address, phone or card number found
nowhere in the prompt (another customer's, or one the model made up), is cut off and ends in the domain's notice
(``scope.withheld_message``). A
small base model's words are not to be trusted; this check is.
"""

from __future__ import annotations

import re
from collections.abc import Generator, Iterator, Sequence

from kit.components.chat_template import ChatMessage
from kit.services.assistant.prompt import CITE
from kit.services.assistant.reply import Reply
from kit.services.safety.pii import find_pii, pii_spans
from kit.settings import WITHHELD_MESSAGE

SPAN_WORDS = 8  # this many words in a row from the system prompt (and not from the documents or the user) leak it
HOLD_BACK_WORDS = SPAN_WORDS + 2  # words held back while streaming, so a leak is caught before any of it is sent
WITHHELD = WITHHELD_MESSAGE  # the notice when a domain sets none


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def _spans(words: Sequence[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


class OutputGuard:
    """What an answer may not say: long spans of the system prompt, personal data the prompt does not hold."""

    def __init__(self, system: str, messages: Sequence[ChatMessage], public: str = "", notice: str = WITHHELD) -> None:
        self.notice = notice
        given = " ".join(m["content"] for m in messages if m["role"] != "system") + "\n" + public
        # Spans the user or the documents also hold are theirs to repeat.
        self.secret = _spans(_words(system), SPAN_WORDS) - _spans(_words(given), SPAN_WORDS)
        self.known_pii = find_pii(system + "\n" + given)

    def violation(self, text: str, final: bool = True) -> str:
        """Why ``text`` may not be sent ("" when it may). Not ``final``: an item at its very end may be half
        written ("2027-03-2" reads as a phone number), so it is judged once text follows it or the answer ends;
        nothing of it has been sent by then (``guarded`` holds the last words back)."""
        if self.secret and _spans(_words(text), SPAN_WORDS) & self.secret:
            return "quotes the system prompt"
        end = len(text.rstrip())
        for _, stop, value in pii_spans(text):
            if value in self.known_pii or (not final and stop >= end):  # may be half written: judged once complete
                continue
            return "holds personal data the conversation does not"
        return ""


def guarded(pieces: Iterator[str], guard: OutputGuard, reply: Reply) -> Iterator[str]:
    """``pieces`` as they come, each held back until ``HOLD_BACK_WORDS`` more words have followed it and the guard
    has seen them; on a violation the held pieces are dropped, the model is stopped and the notice is sent
    instead (``reply.withheld`` says why)."""
    text, held = "", []
    for piece in pieces:
        text += piece
        held.append(piece)
        reason = guard.violation(text, final=False)
        if reason:
            yield from _withhold(reason, pieces, held, text, reply, guard.notice)
            return
        while len(held) > 1 and len("".join(held[1:]).split()) >= HOLD_BACK_WORDS:
            yield held.pop(0)
    reason = guard.violation(text)
    if reason:
        yield from _withhold(reason, pieces, held, text, reply, guard.notice)
        return
    yield from held


def _withhold(
    reason: str, pieces: Iterator[str], held: list[str], text: str, reply: Reply, notice: str
) -> Iterator[str]:
    """The notice instead of the held text, then the retrieved sources: the customer can still read them."""
    reply.withheld = reason
    if isinstance(pieces, Generator):
        pieces.close()  # frees the engine at once
    yield ("\n\n" if len(text) > sum(map(len, held)) else "") + notice
    if reply.sources:
        yield "\nThese documents may answer your question:"
        for source in reply.sources:
            yield f"\n{source.label()}"


def until_phantom_citation(pieces: Iterator[str], n_sources: int) -> Iterator[str]:
    """The model's pieces up to its first citation of a document it was not given ("[7]" with four): a small model
    that cites what is not there has stopped answering and started to ramble, so the answer ends before it. A piece
    that may begin a citation ("[1") is held until the bracket closes."""
    held: list[str] = []
    try:
        for piece in pieces:
            held.append(piece)
            text = "".join(held)
            phantom = next((m for m in CITE.finditer(text) if not 1 <= int(m.group(1)) <= n_sources), None)
            if phantom:
                kept = text[: phantom.start()].rstrip()
                if kept:
                    yield kept
                return
            bracket = text.rfind("[")
            if bracket == -1 or "]" in text[bracket:] or len(text) - bracket > 3:
                yield from held
                held = []
        yield from held
    finally:
        if isinstance(pieces, Generator):
            pieces.close()
