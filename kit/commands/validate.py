"""`kit validate <domain-dir>`: load the spec, check every file, list all problems; warn about weak eval items."""

from __future__ import annotations

from pathlib import Path

import click

from kit.components.llm import server_ignores
from kit.domain import Domain, find_spec, load_domain, read_draft
from kit.errors import Problem, ValidationFailed
from kit.validation.checks import validate_draft


@click.command("validate")
@click.argument("domain_dir", type=click.Path(file_okay=True, dir_okay=True))
@click.option(
    "--no-embeddings", is_flag=True, help="Find contaminated eval questions by their words only (no embedding model)."
)
def command(domain_dir: str, no_embeddings: bool) -> None:
    """Check DOMAIN_DIR's domain.yaml and every file it names.

    Prints every problem as `file:line: what is wrong — how to fix`; exits 1 when
    there is any. Then warns (exit 0) about eval questions that a training
    conversation already asks (same text, word overlap >= 0.6, or embedding
    cosine >= 0.92), naming both places, about answer items that an answer
    repeating the question would pass, and about model settings a model.server
    cannot apply (the fact lock, the untrained-token filter, LoRA adapters), and about
    learned checks (screening.learned) with no labelled message to learn from.

    \b
    Example:
      kit validate domains/clinic
    """
    spec_file = find_spec(domain_dir)
    # A section of domain.yaml with problems hides only the checks of the files it names, so one run lists them all.
    draft, problems = read_draft(spec_file)
    if draft is not None:
        found = validate_draft(draft)
        problems += [Problem(str(spec_file.parent / p.file), p.line, p.what, p.hint) for p in found]
    if problems:
        raise ValidationFailed(problems)
    domain = load_domain(spec_file)
    for warning in _warnings(domain, spec_file.parent, not no_embeddings):
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"{Path(domain_dir)}: ok — domain '{domain.name}' is valid")


def _warnings(domain: Domain, shown: Path, embeddings: bool) -> list[str]:
    from kit.services.evaluation import contamination
    from kit.services.safety.guardrails import calibration_mismatch, recalibration_hint

    embed = None
    if embeddings:
        from kit.components.embedding import Embedder

        embed = Embedder(domain.spec.retrieval.embedding_model).embed
    lines = [
        f"{shown / o.item.place}: the question is a near-duplicate of the training turn at {shown / o.training.place} "
        f"({o.how}) — reword it, ask about another fact, or keep it out of the held-out set"
        for o in contamination.check(domain, embed)
    ]
    lines += [str(Problem(str(shown / w.file), w.line, w.what, w.hint)) for w in contamination.echoes(domain)]
    mismatch = calibration_mismatch(domain.spec)
    if mismatch is not None:
        lines.append(f"{shown / 'domain.yaml'}: {mismatch} — {recalibration_hint(domain.spec, str(shown))}")
    return lines + _unlearnable(domain, shown) + server_ignores(domain.spec.model)


def _unlearnable(domain: Domain, shown: Path) -> list[str]:
    """A learned check with no labelled calibration message screens as before: say so."""
    from kit.services.safety.learned import calibration_items

    labels = {item.expect for item in calibration_items(domain)} if domain.spec.screening.learned else set()
    return [
        f"{shown / 'domain.yaml'}: screening.learned names {cid}, but the safety set's calibration split has no "
        f"message labelled {cid}, so it screens by its patterns and examples — add labelled messages to "
        f"{domain.spec.eval.safety}"
        for cid in domain.spec.screening.learned
        if cid not in labels
    ]
