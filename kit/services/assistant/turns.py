"""One served chat turn, the same for the UI and the API.

A turn takes a place in the one admission queue in front of the model (kit/services/assistant/admission.py), belongs to
a conversation (a client threads one by passing its id back; otherwise a new one starts), streams the chat service's
reply, turns an error — before the answer or in the middle of it — into one ``TurnError``, and is recorded in the
feedback store when it ends, failed turns included.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from kit.components.chat_template import ChatMessage
from kit.components.llm import ContextOverflow
from kit.domain import Domain
from kit.errors import KitError
from kit.services.assistant.admission import Admission, Busy
from kit.services.assistant.chat import ChatService
from kit.services.assistant.reply import Reply
from kit.services.owner.feedback import FeedbackStore, answer_shown, new_conversation

logger = logging.getLogger(__name__)

ErrorCode = Literal["context_length_exceeded", "server_busy", "server_error"]


@dataclass(frozen=True)
class TurnError:
    """What the customer is told when a turn fails: a code for clients, a sentence for people."""

    code: ErrorCode
    message: str
    retry_after: int | None = None  # seconds, when trying again later will help


def turn_error(exc: KitError) -> TurnError:
    """The one mapping from an error to what the UI shows and the API answers."""
    if isinstance(exc, Busy):
        return TurnError("server_busy", str(exc), exc.retry_after)
    if isinstance(exc, ContextOverflow):
        return TurnError("context_length_exceeded", str(exc))
    return TurnError("server_error", str(exc))


class Turn:
    """A turn in progress. Iterate it to stream the answer; a failure ends the stream with ``error`` set. When the
    stream ends the turn is recorded (``turn_id``) and its place given back; a reader that stops early gives the
    place back without recording."""

    def __init__(
        self, conversation: str, reply: Reply | None, error: TurnError | None = None,
        ended: Callable[[Turn, bool], None] | None = None,
    ) -> None:  # fmt: skip
        self.conversation = conversation
        self.reply = reply
        self.error = error
        self.turn_id = 0
        self._ended = ended

    @property
    def text(self) -> str:
        """The answer as the customer saw it: what was written, then the error's sentence if it failed."""
        return answer_shown(self.reply.text if self.reply else "", self.error.message if self.error else "")

    def __iter__(self) -> Iterator[str]:
        if self.reply is None:
            return
        ended = False
        try:
            yield from self.reply
            ended = True
        except KitError as exc:
            self.error, ended = turn_error(exc), True
            logger.warning("conversation %s: the answer failed after %d pieces: %s", self.conversation,
                           self.reply.n_pieces, exc)  # fmt: skip
        finally:
            if self._ended is not None:
                self._ended(self, ended)
                self._ended = None

    def finish(self) -> str:
        """Consume the stream; the answer as the customer saw it."""
        for _ in self:
            pass
        return self.text


class TurnService:
    """The assistant as served: chat turns through one admission queue, recorded in one feedback store."""

    def __init__(self, chat: ChatService, store: FeedbackStore, admission: Admission) -> None:
        self.chat = chat
        self.store = store
        self.admission = admission

    @property
    def domain(self) -> Domain:
        return self.chat.domain

    @property
    def model(self) -> str:
        """The model's name, as replies report it."""
        return self.chat.engine.name

    def greeting(self) -> str:
        return self.chat.greeting()

    def start(self, question: str, history: Sequence[ChatMessage] = (), conversation: str | None = None) -> Turn:
        """A turn answering ``question`` after ``history`` in ``conversation`` (a new one when None). A turn that
        cannot start (busy, a question too long for the model) comes back with ``error`` set and nothing to stream."""
        conversation = conversation or new_conversation()
        try:
            self.admission.enter()
        except Busy as exc:
            return Turn(conversation, None, turn_error(exc))
        started = time.monotonic()
        try:
            reply = self.chat.ask(question, history)
        except KitError as exc:
            self.admission.leave(time.monotonic() - started)
            return Turn(conversation, None, turn_error(exc))
        except BaseException:
            self.admission.leave(time.monotonic() - started)
            raise
        return Turn(conversation, reply, ended=lambda turn, done: self._end(turn, done, started))

    def _end(self, turn: Turn, done: bool, started: float) -> None:
        self.admission.leave(time.monotonic() - started)
        if not done or turn.reply is None:
            return
        reply = turn.reply
        turn.turn_id = self.store.record(turn.conversation, reply, turn.error.message if turn.error else "")
        failed = f", failed: {turn.error.code}" if turn.error else ""
        logger.info("conversation %s: %s turn in %.2f s, %d tokens%s", turn.conversation, reply.kind,
                    reply.total_s or 0.0, reply.tokens, failed)  # fmt: skip

    def rate(self, turn_id: int, up: bool) -> None:
        """Thumbs up (True) or down (False) on a recorded turn."""
        self.store.rate(turn_id, up)
