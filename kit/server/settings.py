"""What one server accepts (``Limits``), each bound settable from the environment as KIT_<FIELD>."""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kit.domain import Domain
from kit.errors import KitError
from kit.services.owner.feedback import FeedbackStore

FEEDBACK_DB_ENV = "KIT_FEEDBACK_DB"  # where feedback goes instead of <domain>/build (a container's volume)
LIMITS_ENV_PREFIX = "KIT_"  # Limits.max_busy is set by KIT_MAX_BUSY, and so on


class Limits(BaseModel):
    """What one server accepts. Each field can be set from the environment: KIT_<FIELD>, e.g. KIT_MAX_BUSY=4."""

    model_config = ConfigDict(extra="forbid")
    max_body_bytes: int = Field(
        default=256_000,
        ge=1024,
        description="Largest request body (an API call, a UI event or upload); larger is a 413.",
    )
    max_messages: int = Field(default=64, ge=1, description="Most messages in one chat completion request.")
    max_message_chars: int = Field(
        default=32_000, ge=1, description="Longest message in characters (the model's context bounds it further)."
    )
    rate_per_minute: float = Field(
        default=60,
        ge=0,
        description="Requests a minute each client (its API key, else its IP address) may make; 0: off.",
    )
    rate_burst: int = Field(default=60, ge=1, description="Requests a client may make at once before the rate applies.")
    widget_rate_per_minute: float = Field(
        default=10,
        ge=0,
        description="Questions and lead forms a minute each website visitor (IP address) may send through the chat "
        "widget's publishable key; 0: off.",
    )
    widget_rate_burst: int = Field(
        default=5, ge=1, description="Widget requests a visitor may send at once before widget_rate_per_minute applies."
    )
    max_busy: int = Field(
        default=8,
        ge=1,
        description="Chat turns, UI and API together, running or waiting for the model; beyond it the API answers 503"
        " with Retry-After and the UI says busy.",
    )
    queue_size: int = Field(default=64, ge=1, description="UI requests waiting in Gradio's queue; beyond it a 503.")
    ui_sessions: int = Field(
        default=1000,
        ge=1,
        description="UI sessions whose state (history, ~35 kB each) is kept in memory; the longest idle is dropped.",
    )

    @classmethod
    def from_env(cls, environ: MutableMapping[str, str] | None = None) -> Limits:
        """The defaults, overridden by KIT_<FIELD> variables; a bad value is a KitError naming the variable."""
        env = os.environ if environ is None else environ
        given = {name: env[LIMITS_ENV_PREFIX + name.upper()] for name in cls.model_fields
                 if env.get(LIMITS_ENV_PREFIX + name.upper(), "").strip()}  # fmt: skip
        try:
            return cls.model_validate(given)
        except ValidationError as exc:
            first = exc.errors()[0]
            var = LIMITS_ENV_PREFIX + str(first["loc"][0]).upper()
            raise KitError(
                f"{var}={given.get(str(first['loc'][0]))!r}: {first['msg']}", f"fix or unset {var}"
            ) from None


def feedback_store(domain: Domain, named: bool = False) -> FeedbackStore:
    """The domain's feedback store, purged once a day from now on: in its build folder, or KIT_FEEDBACK_DB's file;
    ``named`` (several domains in one server) adds the domain's name to that file's
    (``/data/feedback.sqlite3`` -> ``/data/feedback-<name>.sqlite3``)."""
    db, privacy = os.environ.get(FEEDBACK_DB_ENV), domain.spec.privacy
    if db:
        path = Path(db)
        path = path.with_name(f"{path.stem}-{domain.name}{path.suffix}") if named else path
        store = FeedbackStore(path, privacy)
    else:
        store = FeedbackStore.for_domain(domain.build_dir, privacy)
    store.purge_daily()  # the store purged expired turns when it opened; then once a day
    return store
