"""One exception family for everything a user can get wrong.

A message says what is wrong, where, and what to do next. The CLI prints
``error: <what> — <hint>`` and exits non-zero; only ``--debug`` shows a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass


class KitError(Exception):
    """Base of every error kit raises on purpose."""

    def __init__(self, what: str, hint: str = "") -> None:
        super().__init__(what)
        self.what = what
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.what} — {self.hint}" if self.hint else self.what


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong in one file, with the line where it is (0 when the file as a whole)."""

    file: str
    line: int
    what: str
    hint: str = ""

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.what}" + (f" — {self.hint}" if self.hint else "")


class ValidationFailed(KitError):
    """Raised when a domain or data file has problems; carries all of them."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(set(problems))
        n = len(self.problems)
        super().__init__(
            f"{n} problem{'s' if n != 1 else ''} found",
            "fix each one listed above, then run `kit validate` again",
        )


class SpecError(KitError):
    """domain.yaml cannot be loaded."""


class DataError(KitError):
    """A data file (conversations, eval set, catalogue, documents) is malformed."""


class IndexMissing(KitError):
    """A domain was searched before it was indexed."""


class ModelError(KitError):
    """A model file or adapter is missing, corrupt or unsupported."""


class MissingDependency(KitError):
    """An optional package is not installed."""
