"""Load a domain folder: read domain.yaml, validate it once, and resolve its paths."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from kit.errors import Problem, SpecError, ValidationFailed
from kit.settings import DomainSpec, Evaluation, Retrieval, Rule, Source, Training, inside
from kit.validation.pydantic_errors import problems_of
from kit.validation.yaml_lines import Located

SPEC_FILE = "domain.yaml"
BUILD_DIR = "build"
CORRECTIONS = "data/corrections.jsonl"  # answers the owner corrected in the console; trained on with the rest


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
        return _path(self.root, rel)

    @property
    def build_dir(self) -> Path:
        """Where indexes and other generated files go (git-ignored)."""
        return self.root / BUILD_DIR

    def rel(self, path: Path) -> str:
        """``path`` relative to the domain folder, with forward slashes."""
        return _rel(self.root, path)

    @property
    def conversation_files(self) -> list[str]:
        """The training conversation files: those the spec names, and the owner's corrections once there are any."""
        return conversation_files(self.root, self.spec.training)


@dataclass(frozen=True)
class Draft:
    """A domain as far as its domain.yaml validates: the folder, and each section the data checks read, validated on
    its own (None where that section has problems), so `kit validate` can check the files the sound ones name."""

    root: Path
    retrieval: Retrieval | None
    training: Training | None
    eval: Evaluation | None
    rules: list[Rule] | None
    trigger_ids: tuple[str, ...] | None = None  # the hand-off triggers' ids, when the handoff section is sound

    @classmethod
    def of(cls, domain: Domain) -> Draft:
        """The draft of a loaded domain: every section sound."""
        spec = domain.spec
        triggers = tuple(t.id for t in spec.handoff.triggers)
        return cls(domain.root, spec.retrieval, spec.training, spec.eval, spec.rules, triggers)

    def path(self, rel: str) -> Path:
        """Absolute path of a file the spec names (relative to the domain folder)."""
        return _path(self.root, rel)

    def rel(self, path: Path) -> str:
        """``path`` relative to the domain folder, with forward slashes."""
        return _rel(self.root, path)


def conversation_files(root: Path, training: Training | None) -> list[str]:
    """``training.conversations``, then ``CORRECTIONS`` when that file exists in ``root`` and is not named already."""
    named = list(training.conversations) if training else []
    extra = [CORRECTIONS] if (root / CORRECTIONS).is_file() and CORRECTIONS not in named else []
    return named + extra


def _path(root: Path, rel: str) -> Path:
    return Path(rel) if Path(rel).is_absolute() else inside(root, rel)


def _rel(root: Path, path: Path) -> str:
    absolute = path if path.is_absolute() else Path.cwd() / path
    if absolute.is_relative_to(root):
        return absolute.relative_to(root).as_posix()
    return path.resolve().relative_to(root).as_posix()


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
    doc, problems = _parse(spec_file)
    if doc is None:
        return None, problems
    spec, problems = _validate(doc, spec_file)
    problems = _repeated(doc, spec_file) + problems
    return (spec if not problems else None), problems


def read_draft(spec_file: Path) -> tuple[Draft | None, list[Problem]]:
    """Every problem in domain.yaml, with the draft of the sections that validate on their own (None when the file is
    not a YAML mapping), so a broken section hides only the checks that need it."""
    doc, problems = _parse(spec_file)
    if doc is None:
        return None, problems
    spec, problems = _validate(doc, spec_file)
    problems = _repeated(doc, spec_file) + problems
    root = spec_file.parent.resolve()
    if spec is not None:
        return Draft.of(Domain(root=root, spec=spec)), problems
    sections = {key: _section(doc.data, key, spec_file.parent) for key in ("retrieval", "training", "eval", "rules")}
    return Draft(root=root, **sections), problems


def _parse(spec_file: Path) -> tuple[Located | None, list[Problem]]:
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
    except ValueError as exc:  # a scalar YAML reads as a date that is none, e.g. a holiday 2026-13-01
        line, value = _bad_date(text)
        what = f"holds {value!r}, a date that does not exist ({exc})"
        return None, [Problem(shown, line, what, "write a real date as YYYY-MM-DD")]
    if not isinstance(doc.data, dict):
        return None, [Problem(shown, 1, "must be a mapping of keys to values", "start from data_templates/")]
    return doc, []


def _repeated(doc: Located, spec_file: Path) -> list[Problem]:
    return [
        Problem(str(spec_file), line, f"'{key}' is given twice (first on line {first}); only this one would count",
                "keep one of them")
        for line, key, first in doc.repeated_keys()
    ]  # fmt: skip


def _bad_date(text: str) -> tuple[int, str]:
    """(line, value) of the first scalar YAML reads as a date (a timestamp) that is not a real one; (0, '')."""
    bad: list[yaml.ScalarNode] = []
    stack = [yaml.compose(text, Loader=yaml.SafeLoader)]
    while stack:
        node = stack.pop()
        if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:timestamp":
            try:
                yaml.SafeLoader("").construct_yaml_timestamp(node)
            except ValueError:
                bad.append(node)
        elif isinstance(node, yaml.SequenceNode):
            stack += node.value
        elif isinstance(node, yaml.MappingNode):
            stack += [part for pair in node.value for part in pair]
    first = min(bad, key=lambda n: n.start_mark.line, default=None)
    return (first.start_mark.line + 1, str(first.value)) if first else (0, "")


def _validate(doc: Located, spec_file: Path) -> tuple[DomainSpec | None, list[Problem]]:
    shown = str(spec_file)
    try:
        spec = DomainSpec.model_validate(doc.data, context={"root": spec_file.parent})
    except RecursionError:
        return None, [Problem(shown, 0, "is nested too deeply to read", "flatten the nested lists and mappings")]
    except ValidationError as exc:
        found = problems_of(exc, DomainSpec)
        return None, [Problem(shown, doc.line_of(loc), what, hint) for loc, what, hint in found]
    return spec, []


def _section(data: dict[str, Any], key: str, root: Path) -> Any:
    """One top-level section validated on its own (its default when absent); None when it has problems (already
    reported by the whole spec's validation)."""
    field = DomainSpec.model_fields[key]
    if key not in data:
        return None if field.is_required() else field.get_default(call_default_factory=True)
    try:
        return TypeAdapter(field.annotation).validate_python(data[key], context={"root": root})
    except (ValidationError, RecursionError):
        return None


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
    return source_files(domain.root, domain.spec.retrieval)


def source_files(root: Path, retrieval: Retrieval) -> list[tuple[Path, Source]]:
    """Every document file under ``retrieval``'s sources in the domain folder ``root`` (see `document_files`)."""
    found: dict[Path, Source] = {}
    for source in retrieval.sources:
        base = _path(root, source.path)
        files = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file() or p.is_symlink())
        for f in files:
            parts = f.relative_to(root).parts if f.is_relative_to(root) else f.parts
            if not any(part.startswith(".") for part in parts):
                found.setdefault(f, source)
    return sorted(found.items())
