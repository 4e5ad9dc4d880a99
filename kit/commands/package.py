"""`kit package <domain>`: stage the domain, its models, index and licences with kit; gate; build the image."""

from __future__ import annotations

import time
from pathlib import Path

import click

from kit.domain import load_domain


@click.command("package")
@click.argument("domain_dir", type=click.Path())
@click.option("--tag", default=None, help="Image tag (default: kit-<domain>:latest).")
@click.option("--no-gate", is_flag=True, help="Skip `kit eval --gate` before building.")
@click.option("--accept-unknown-licence", is_flag=True, help="Ship a model whose licence files are not beside it.")
@click.option(
    "--context",
    "context_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Where to stage the build context (default: <domain>/build/package).",
)
@click.option("--stage-only", is_flag=True, help="Stage the context and stop; build it with your own tools.")
@click.option(
    "--wheelhouse",
    "wheelhouses",
    multiple=True,
    type=click.Path(file_okay=False, exists=True),
    help="Folder with a prebuilt llama-cpp-python wheel (default: pip's cache and find-links); repeatable.",
)
@click.option("--base-image", default=None, help="Base image (default: the Dockerfile's debian:bookworm-slim).")
@click.option("--build-arg", "build_args", multiple=True, metavar="KEY=VALUE", help="Passed to the build; repeatable.")
@click.option(
    "--builder-opt", "builder_opts", multiple=True, metavar="OPT", help="Extra option for the builder; repeatable."
)
def command(
    domain_dir: str,
    tag: str | None,
    no_gate: bool,
    accept_unknown_licence: bool,
    context_dir: str | None,
    stage_only: bool,
    wheelhouses: tuple[str, ...],
    base_image: str | None,
    build_args: tuple[str, ...],
    builder_opts: tuple[str, ...],
) -> None:
    """Build DOMAIN_DIR's assistant into a container image that runs offline.

    Stages the domain, its built index, its model (GGUF + adapters), the licence of every model and
    kit itself into a build context; runs the eval gate; builds with docker, or buildah/podman.

    \b
    Examples:
      kit package domains/retail
      kit package domains/retail --tag shop-assistant:1 --no-gate
      kit package domains/retail --stage-only --context /tmp/ctx
    """
    from kit.services.packaging import package

    domain = load_domain(domain_dir)
    tag = tag or f"kit-{domain.name}:latest"
    ctx = Path(context_dir) if context_dir else domain.build_dir / "package"
    wheel_dirs = [Path(w) for w in wheelhouses] if wheelhouses else None
    staged = package.stage(domain, ctx, wheel_dirs, accept_unknown_licence)
    click.echo(f"staged {ctx}")
    for model, files in staged.licences.items():
        click.echo(f"  licence {model}: {', '.join(Path(f).name for f in files)}")
    for model in staged.unknown_licences:
        click.echo(f"  licence {model}: UNKNOWN (accepted with --accept-unknown-licence)")
    click.echo(f"  wheels: {', '.join(staged.wheels) or 'none (llama-cpp-python compiles in the build)'}")
    if not no_gate:
        package.run_gate(domain)
    if stage_only:
        return
    tool = package.builder()
    args = [*build_args, *([f"BASE_IMAGE={base_image}"] if base_image else [])]
    started = time.perf_counter()
    package.build(tool, ctx, tag, args, list(builder_opts))
    size = package.image_size(tool, tag)
    shown = f"{size / 1e6:,.0f} MB" if size else "size unknown"
    click.echo(f"built {tag} with {tool} in {time.perf_counter() - started:.0f} s ({shown}), holding:")
    parts = package.contents(ctx)
    for what, part in parts:
        click.echo(f"  {what:<30} {part / 1e6:>9,.1f} MB")
    if size:
        click.echo(f"  {'Debian, Python and libraries':<30} {(size - sum(p for _, p in parts)) / 1e6:>9,.1f} MB")
        click.echo(f"  without the language model: {(size - parts[0][1]) / 1e6:,.0f} MB")
    click.echo(f"run it: {package.run_command(tool, tag)}")
    click.echo("kit.env holds KIT_API_KEY, KIT_UI_USER and KIT_UI_PASSWORD; see docker/README.md")
