"""`kit validate <domain-dir>`: load the spec, check every file, list all problems."""

from __future__ import annotations

from pathlib import Path

import click

from kit.domain import Domain, find_spec, read_spec
from kit.errors import Problem, ValidationFailed
from kit.validation.checks import validate_domain


@click.command("validate")
@click.argument("domain_dir", type=click.Path(file_okay=True, dir_okay=True))
def command(domain_dir: str) -> None:
    """Check DOMAIN_DIR's domain.yaml and every file it names.

    Prints every problem as `file:line: what is wrong — how to fix`; exits 1 when
    there is any.

    \b
    Example:
      kit validate domains/clinic
    """
    spec_file = find_spec(domain_dir)
    spec, problems = read_spec(spec_file)
    if spec is not None:
        found = validate_domain(Domain(root=spec_file.parent.resolve(), spec=spec))
        problems = [Problem(str(spec_file.parent / p.file), p.line, p.what, p.hint) for p in found]
    if problems:
        raise ValidationFailed(problems)
    assert spec is not None
    click.echo(f"{Path(domain_dir)}: ok — domain '{spec.name}' is valid")
