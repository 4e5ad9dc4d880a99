"""`kit new <template-or-path> <dest>`: copy a domain template into a new folder, renamed."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import click

from kit.domain import SPEC_FILE, find_spec
from kit.errors import KitError
from kit.shipped import not_copied
from kit.templates import template_dir


@click.command("new")
@click.argument("template")
@click.argument("dest", type=click.Path(file_okay=False))
@click.option("--name", help="Domain name (default: from DEST's folder name).")
def command(template: str, dest: str, name: str | None) -> None:
    """Copy TEMPLATE (retail, clinic, travel, or a domain folder) to DEST, ready to edit.

    \b
    Example:
      kit new clinic ./my-clinic --name my-clinic
      kit validate ./my-clinic
    """
    source = template_dir(template)
    target = Path(dest)
    if target.exists() and any(target.iterdir()):
        raise KitError(f"'{target}' already exists and is not empty", "choose a new folder for the domain")
    new_name = name or slug(target.resolve().name)
    if not re.fullmatch(r"[a-z][a-z0-9_-]{2,62}", new_name):
        raise KitError(
            f"'{new_name}' is not a valid domain name",
            "use 3–63 lowercase letters, digits, '-' or '_', starting with a letter (--name)",
        )
    shutil.copytree(source, target, ignore=not_copied, dirs_exist_ok=True)
    rename(find_spec(target), new_name)
    click.echo(f"created {target} (domain '{new_name}', from {source.name})")
    click.echo(f"next: edit {target / SPEC_FILE} and its documents, then run `kit validate {target}`")


def slug(text: str) -> str:
    """A valid domain name from a folder name."""
    out = re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-_")
    out = out if out[:1].isalpha() else f"d-{out}"
    return (out + "-domain")[:63] if len(out) < 3 else out[:63]


def rename(spec_file: Path, name: str) -> None:
    """Set `name:` in domain.yaml, keeping the user's comments and layout."""
    text = spec_file.read_text(encoding="utf-8")
    new, count = re.subn(r"(?m)^name:.*$", f"name: {name}", text, count=1)
    if count == 0:
        new = f"name: {name}\n{text}"
    spec_file.write_text(new, encoding="utf-8")
