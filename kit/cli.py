"""The `kit` command line. One module per verb in kit/commands/; heavy imports stay inside them.

User mistakes end as one line, ``error: <what> — <what to do next>``, and a non-zero exit.
``kit --debug <verb>`` shows the traceback instead.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

import click

from kit import __version__
from kit.errors import KitError, ValidationFailed

# verb -> (module under kit.commands, one-line help); modules are imported only when the verb runs.
VERBS: dict[str, tuple[str, str]] = {
    "new": ("new", "Copy a template into a new domain folder."),
    "validate": ("validate", "Check a domain's spec and every file it names."),
    "index": ("index", "Index a domain's documents for search (incremental)."),
    "search": ("search", "Show what retrieval finds for a question."),
    "prepare": ("prepare", "Assemble the embedded model and load the embedding model once."),
    "ask": ("ask", "Answer one question with its sources (--json for timings)."),
    "chat": ("chat", "Chat with a domain's assistant in the browser (or --terminal)."),
    "serve": ("serve", "Serve the chat UI and an OpenAI-compatible API on one port."),
    "admin-password": ("admin_password", "Print the hash of a password for the owner's console."),
    "synth": ("synth", "Make training conversations from the documents (templates or a teacher model)."),
    "finetune": ("finetune", "Fine-tune a LoRA adapter on the domain's conversations."),
    "export": ("export", "Export a fine-tune run as a GGUF and check llama.cpp runs it."),
    "eval": ("eval", "Score models on the domain's eval set; report and ship gate."),
    "package": ("package", "Build the domain's assistant into an offline container image."),
}


class LazyGroup(click.Group):
    """A group whose verbs are imported only when used, so `kit --help` stays fast."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(VERBS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in VERBS:
            return None
        module = importlib.import_module(f"kit.commands.{VERBS[name][0]}")
        command: click.Command = module.command
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, text) for name, (_, text) in VERBS.items()])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kit")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default="warning",
    show_default=True,
    help="What kit's own log says on stderr (e.g. debug: the fact lock's and the claim check's decisions).",
)
@click.pass_context
def cli(ctx: click.Context, debug: bool, log_level: str) -> None:
    """Build a private chat assistant for a business from its own documents.

    \b
    Examples:
      kit new retail my-shop           copy the retail template
      kit validate my-shop             check every file, list all problems
      kit index my-shop                index its documents for search
      kit chat my-shop                 chat with it in the browser
      kit finetune my-shop             specialise the small model with LoRA
      kit eval my-shop --gate          is it good enough to ship?
    """
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kit").setLevel(log_level.upper())
    ctx.obj = {"debug": debug}


def main() -> None:
    """Entry point: run the CLI, turning KitError into one clear line."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # bitsandbytes (fine-tuning only) warns about optional GPU kernels whenever transformers imports it.
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    debug = "--debug" in sys.argv[1:3]
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except KitError as exc:
        if debug:
            raise
        report(exc)
        sys.exit(1)


def report(exc: KitError) -> None:
    """Print a KitError (and, for a failed validation, every problem) to stderr."""
    if isinstance(exc, ValidationFailed):
        for problem in exc.problems:
            click.echo(str(problem), err=True)
    click.echo(f"error: {exc}", err=True)
