"""The owner's corrections: a recorded answer rewritten as it should have been, saved as a training conversation.

A correction is one conversation in the kit's format (``kit.records.Conversation``): the customer's question as
recorded (the owner may reword it so it reads on its own, e.g. a follow-up) and the owner's answer. Earlier turns are
left out: their answers were not reviewed, and training puts its loss on every assistant turn. It is validated before
anything is written and lands in the domain's ``data/corrections.jsonl`` (``kit.domain.CORRECTIONS``), which
`kit finetune` reads beside the files domain.yaml names. Correcting a turn again replaces its earlier correction.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from kit.domain import CORRECTIONS, Domain
from kit.errors import DataError
from kit.files import replace_text
from kit.records import Conversation
from kit.validation.pydantic_errors import problems_of

logger = logging.getLogger(__name__)

INTENT = "correction"
CORRECTION_ID = re.compile(r"correction-(\d+)-[0-9a-f]{10}")
_SAVING = threading.Lock()
MAX = 4_000  # characters of a question or an answer: a chat answer, not a document


def correction_id(turn: dict[str, Any]) -> str:
    """The id a correction of a stored turn carries, one per turn: its id in the store and a digest of its
    conversation, so a correction never attaches to another turn of a store started afresh."""
    digest = hashlib.sha256(str(turn["conversation"]).encode("utf-8")).hexdigest()[:10]
    return f"correction-{int(turn['id'])}-{digest}"


def turn_of(ident: str) -> int | None:
    """The stored turn id a correction id names; None for an id the console did not write."""
    found = CORRECTION_ID.fullmatch(ident)
    return int(found.group(1)) if found else None


def correction(turn: dict[str, Any], answer: str, question: str | None = None) -> Conversation:
    """The corrected conversation for a stored ``turn``; a DataError naming what is wrong when it is not valid."""
    asked, answer = (turn["question"] if question is None else question).strip(), answer.strip()
    empty = [name for name, text in (("question", asked), ("answer", answer)) if not text]
    if empty:
        raise DataError(f"the correction's {' and '.join(empty)} is empty", "write it in full, then save again")
    long = [f"{name} has {len(text):,}" for name, text in (("question", asked), ("answer", answer)) if len(text) > MAX]
    if long:
        raise DataError(f"the correction's {' and '.join(long)} characters", f"keep each under {MAX:,} characters")
    record = {
        "id": correction_id(turn),
        "intent": INTENT,
        "messages": [{"role": "user", "content": asked}, {"role": "assistant", "content": answer}],
    }
    try:
        return Conversation.model_validate(record)
    except ValidationError as exc:
        what = "; ".join(what for _, what, _ in problems_of(exc, Conversation))
        raise DataError(f"the correction is not a valid conversation: {what}", "change it and save again") from None


def corrections_file(domain: Domain) -> Path:
    return domain.root / CORRECTIONS


def save(domain: Domain, record: Conversation) -> Path:
    """Write ``record`` to the domain's corrections file, replacing an earlier correction of the same turn. The file is
    replaced whole (``kit.files``): a failure leaves it as it was and says which file could not be written. Lines this
    code cannot read are kept."""
    path = corrections_file(domain)
    with _SAVING:  # two saves at once would each drop the other's line
        kept = [line for line in _lines(path) if _record_id(line) != record.id]
        replace_text(path, "".join(f"{line}\n" for line in [*kept, record.model_dump_json(exclude_none=True)]))
    logger.info("saved %s to %s", record.id, path)
    return path


def corrected(domain: Domain) -> dict[str, Conversation]:
    """The corrections saved so far, by their id (``correction_id`` of the turn each corrects)."""
    found: dict[str, Conversation] = {}
    for line in _lines(corrections_file(domain)):
        ident = _record_id(line)
        if ident is not None and turn_of(ident) is not None:
            try:
                found[ident] = Conversation.model_validate_json(line)
            except ValidationError:
                continue  # kit validate reports it; the console shows the others
    return found


def _lines(path: Path) -> list[str]:
    if not path.is_file():
        return []
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _record_id(line: str) -> str | None:
    try:
        data = json.loads(line)
    except json.JSONDecodeError:
        return None
    ident = data.get("id") if isinstance(data, dict) else None
    return ident if isinstance(ident, str) else None
