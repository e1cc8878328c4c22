"""The ``parity`` app: every command in one table, and :func:`main`, which turns what a command raises
into the exit codes of README.md ("The command line")."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

import typer

from parity.core.errors import ParityError

from .archive import ARCHIVE_COMMANDS, ARCHIVE_HELP, EXPORT_HELP, export
from .audit import audit
from .coverage import coverage
from .deploy import deploy
from .doctor import doctor
from .exits import EXIT_OK, EXIT_USAGE
from .models import models
from .register import register
from .run import demo, run
from .serve import serve
from .targets import list_targets, setup
from .webhook import CREATE_HELP, GROUP_HELP, SERVE_HELP, create_webhook, serve_webhook

DESCRIPTION = "Prove that scikit-learn models converted to ONNX and PMML predict what the originals predict."

#: name → (command, one-line help), in the order ``parity --help`` lists them.
COMMANDS: dict[str, tuple[Callable[..., int], str]] = {
    "doctor": (doctor, "check the toolchain and say how to fix what is missing"),
    "register": (register, "register a saved model with its reference data"),
    "models": (models, "list the registry"),
    "run": (run, "convert, validate and archive every model not archived yet"),
    "demo": (demo, "build a demo registry from bundled data sets, then run"),
    "deploy": (deploy, "create the work pools and register the deployments of deployments/prefect.yaml"),
    "serve": (serve, "serve the same schedules and triggers from this process (no work pools)"),
    "audit": (audit, "re-check every archive bundle's checksums and replay it in today's runtimes"),
    "coverage": (coverage, "run the generated estimator matrix and write docs/coverage.md"),
    "export": (export, EXPORT_HELP),
}
TARGETS_HELP = "list the targets and whether each is ready; set one up"
SETUP_HELP = "provision an emulated target on this machine (idempotent)"

#: Plain help text (no rich panels): it reads the same in a terminal and in a pipe.
_TYPER = {"rich_markup_mode": None, "add_completion": False, "pretty_exceptions_enable": False}


def build_app() -> typer.Typer:
    """The ``parity`` command group built from :data:`COMMANDS` and the ``targets``, ``webhook`` and ``archive``
    groups.

    Returns
    -------
    typer.Typer
    """
    app = typer.Typer(
        name="parity",
        help=DESCRIPTION,
        context_settings={"help_option_names": ["-h", "--help"]},
        **_TYPER,  # type: ignore[arg-type]
    )
    for name, (command, text) in COMMANDS.items():
        app.command(name, help=text, short_help=text)(command)
    targets = typer.Typer(**_TYPER)  # type: ignore[arg-type]
    targets.callback(invoke_without_command=True, help=TARGETS_HELP)(list_targets)
    targets.command("setup", help=SETUP_HELP, short_help=SETUP_HELP)(setup)
    app.add_typer(targets, name="targets", help=TARGETS_HELP, short_help=TARGETS_HELP)
    webhook = typer.Typer(no_args_is_help=True, **_TYPER)  # type: ignore[arg-type]
    webhook.command("serve", help=SERVE_HELP, short_help=SERVE_HELP)(serve_webhook)
    webhook.command("create", help=CREATE_HELP, short_help=CREATE_HELP)(create_webhook)
    app.add_typer(webhook, name="webhook", help=GROUP_HELP, short_help=GROUP_HELP)
    shelf = typer.Typer(no_args_is_help=True, **_TYPER)  # type: ignore[arg-type]
    for name, (command, text) in ARCHIVE_COMMANDS.items():
        shelf.command(name, help=text, short_help=text)(command)
    app.add_typer(shelf, name="archive", help=ARCHIVE_HELP, short_help=ARCHIVE_HELP)
    return app


def _usage(err: typer.TyperException) -> int:
    """Click's usage line and hint, then the problem in Parity's words, on stderr."""
    ctx = getattr(err, "ctx", None)  # usage errors carry the command they are about
    if ctx is not None:
        print(ctx.get_usage(), file=sys.stderr)
        print(f"Try '{ctx.command_path} --help' for help.\n", file=sys.stderr)
    print(f"parity: error: {err.format_message()}", file=sys.stderr)
    return EXIT_USAGE  # whatever click's own code (1 for an unreadable file): exit 1 means a model failed


def console() -> NoReturn:
    """The ``parity`` console script and ``python -m parity``: :func:`main`, then
    :func:`parity.core.exiting.end_process` (an in-process JVM must not meet Python's finalization)."""
    from parity.core.exiting import end_process

    end_process(main())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``parity`` console script and of ``python -m parity``.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after the program name; default ``sys.argv[1:]``.

    Returns
    -------
    int
        The exit code: 0 ok (also after ``--help``), 1 a model failed or a bundle needs action, 2 bad usage
        or a broken environment, the fix in the message on stderr and never a traceback.
    """
    command = typer.main.get_command(build_app())
    try:
        code = command.main(
            args=None if argv is None else list(argv), prog_name="parity", standalone_mode=False
        )
    except typer.TyperException as err:  # typer's own click: usage errors, unreadable files
        return _usage(err)
    except typer.Abort:
        print("parity: aborted", file=sys.stderr)
        return EXIT_USAGE
    except ParityError as err:
        print(f"parity: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    return code if isinstance(code, int) else EXIT_OK
