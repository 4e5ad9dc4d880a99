"""Load a domain folder: read domain.yaml, validate it once, and resolve its paths."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import ValidationError

from kit.errors import Problem, SpecError, ValidationFailed
from kit.settings import DomainSpec, Source, inside
from kit.validation.pydantic_errors import problems_of
from kit.validation.yaml_lines import Located

SPEC_FILE = "domain.yaml"
BUILD_DIR = "build"


@dataclass(frozen=True)
class Domain:
    """A loaded domain: its validated spec and the folder it lives in."""

    root: Path
    spec: DomainSpec

    @property
    def name(self) -> str:
        return self.spec.name

    def path(self, rel: str) -> Path:
        """Absolute path of a file the spec names (relative to the domain folder)."""
        return Path(rel) if Path(rel).is_absolute() else inside(self.root, rel)

    @property
    def build_dir(self) -> Path:
        """Where indexes and other generated files go (git-ignored)."""
        return self.root / BUILD_DIR

    def rel(self, path: Path) -> str:
        """``path`` relative to the domain folder, with forward slashes."""
        absolute = path if path.is_absolute() else Path.cwd() / path
        if absolute.is_relative_to(self.root):
            return absolute.relative_to(self.root).as_posix()
        return path.resolve().relative_to(self.root).as_posix()


def find_spec(path: str | Path) -> Path:
    """The domain.yaml for a folder (or the file itself); a clear error when absent."""
    p = Path(path)
    spec = p / SPEC_FILE if p.is_dir() else p
    if not spec.is_file():
        raise SpecError(
            f"no {SPEC_FILE} at '{p}'",
            "give a domain folder such as domains/retail, or create one with `kit new retail <dest>`",
        )
    return spec


def read_spec(spec_file: Path) -> tuple[DomainSpec | None, list[Problem]]:
    """Parse and validate domain.yaml; return the spec or every problem found in it."""
    shown = str(spec_file)
    try:
        text = spec_file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        return None, [Problem(shown, 0, f"is not UTF-8 text (byte {exc.start})", "save it as UTF-8")]
    try:
        doc = Located(text)
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        what = f"holds a character YAML does not allow (U+{code:04X})"
        return None, [Problem(shown, line, what, "remove it or put the value in quotes with an escape")]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 0
        what = " ".join(f"is not valid YAML: {getattr(exc, 'problem', None) or exc}".split())
        return None, [Problem(shown, line, what, "check indentation and quoting on that line")]
    except RecursionError:
        return None, [Problem(shown, 0, "is nested too deeply to read", "flatten the nested lists and mappings")]
    if not isinstance(doc.data, dict):
        return None, [Problem(shown, 1, "must be a mapping of keys to values", "start from data_templates/")]
    try:
        spec = DomainSpec.model_validate(doc.data, context={"root": spec_file.parent})
    except RecursionError:
        return None, [Problem(shown, 0, "is nested too deeply to read", "flatten the nested lists and mappings")]
    except ValidationError as exc:
        found = problems_of(exc, DomainSpec)
        return None, [Problem(shown, doc.line_of(loc), what, hint) for loc, what, hint in found]
    return spec, []


def load_domain(path: str | Path) -> Domain:
    """Load a domain folder, raising ValidationFailed with every problem in domain.yaml."""
    spec_file = find_spec(path)
    spec, problems = read_spec(spec_file)
    if spec is None:
        raise ValidationFailed(problems)
    return Domain(root=spec_file.parent.resolve(), spec=spec)


def document_files(domain: Domain) -> list[tuple[Path, Source]]:
    """Every document file under the spec's sources, sorted, each with the source naming it.

    Hidden files and folders (``.git``, ``.DS_Store``) are left out.
    """
    found: dict[Path, Source] = {}
    for source in domain.spec.retrieval.sources:
        base = domain.path(source.path)
        files = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file() or p.is_symlink())
        for f in files:
            parts = f.relative_to(domain.root).parts if f.is_relative_to(domain.root) else f.parts
            if not any(part.startswith(".") for part in parts):
                found.setdefault(f, source)
    return sorted(found.items())
