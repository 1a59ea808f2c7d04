"""The ``lomsong`` command: the root app, and each wing's command group mounted on it.

Every wing owns its commands in its own ``cli`` module (``lomsong.<wing>.cli``), which imports
only typer, rich and the kernel at its top and its wing's heavy modules inside each command; so
mounting them all costs nothing, and ``lomsong probe run`` works where only the agent's
dependencies are installed. Any ``LomsongError`` becomes one line on stderr and exit status 1.

The root owns what more than one wing shares: the app itself and the ``probe`` group, which
holds the collector's registry commands and the agent's commands. Each wing's
``add_commands`` adds its commands to the group objects it is given.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from typer.core import TyperArgument, TyperOption

from lomsong import __version__
from lomsong.collector import cli as collector_cli
from lomsong.coverage import cli as coverage_cli
from lomsong.demo import cli as demo_cli
from lomsong.errors import LomsongError, MissingFileError, NotFoundError, ValidationError
from lomsong.probes import cli as probes_cli
from lomsong.storage import cli as storage_cli

app = typer.Typer(
    name="lomsong",
    help="Watch the connectivity of commune service centres and map hamlets without signal.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
probe_app = typer.Typer(
    help="Probes: register them (collector side) and run the agent.", no_args_is_help=True
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"lomsong {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """lomsong: commune connectivity and mobile dead zones."""


# typer lists the root's commands (serve, map, demo), then its groups (probe, token, db, geodata,
# coverage), each in the order they are added here.
app.add_typer(probe_app, name="probe")
collector_cli.add_commands(app, probe=probe_app)
storage_cli.add_commands(app)
probes_cli.add_commands(probe=probe_app)
coverage_cli.add_commands(app)
demo_cli.add_commands(app)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI: a ``LomsongError`` or a usage mistake (an unknown option or command, a bad
    value, a missing argument) is one line on stderr and a non-zero exit, never a traceback."""
    try:
        result = command().main(args=argv, prog_name="lomsong", standalone_mode=False)
    except LomsongError as exc:
        typer.echo(f"lomsong: error: {exc}{help_hint(exc)}", err=True)
        sys.exit(1)
    except typer.Abort:
        typer.echo("lomsong: aborted", err=True)
        sys.exit(130)
    except typer.TyperException as exc:  # typer's own usage errors
        typer.echo(f"lomsong: error: {usage_line(exc)}", err=True)
        sys.exit(int(getattr(exc, "exit_code", 2)))
    sys.exit(result if isinstance(result, int) else 0)


def command() -> Any:
    """The click command typer builds from ``app``, with help that names no types.

    typer 0.29 writes a type tag beside every parameter (``<bool>`` on each flag, ``<path>``,
    ``<int>``); the help text already says what a value is (``Province code, e.g. 04``), so
    the tags are cleared: an empty metavar on options, no type shown for arguments.
    """
    root = typer.main.get_command(app)
    _untyped(root)
    return root


def _untyped(cmd: Any) -> None:
    for param in cmd.params:
        if isinstance(param, TyperOption):
            if param.metavar is None:
                param.metavar = ""
        elif isinstance(param, TyperArgument):
            # the instance's own attribute wins over the class's method
            param.display_type_rich = _no_type  # type: ignore[method-assign]
    # click makes --help when it is first asked for, so that one is untyped as it is made
    made = cmd.get_help_option

    def help_option(ctx: Any) -> Any:
        option = made(ctx)
        if option is not None:
            option.metavar = ""
        return option

    cmd.get_help_option = help_option
    invoke = cmd.invoke

    def invoke_noting_where(ctx: Any) -> Any:
        try:
            return invoke(ctx)
        except LomsongError as exc:
            if not hasattr(exc, "command_path"):
                exc.command_path = ctx.command_path  # type: ignore[attr-defined]
            raise

    cmd.invoke = invoke_noting_where
    for sub in getattr(cmd, "commands", {}).values():
        _untyped(sub)


#: the mistakes the user can put right by reading the command's help
_HINTED = (ValidationError, NotFoundError, MissingFileError)


def help_hint(exc: LomsongError) -> str:
    """`` (see 'lomsong coverage summary --help')`` after a bad value, an unknown code or a
    missing file; nothing after a failure the help cannot put right."""
    path = getattr(exc, "command_path", "")
    return f" (see '{path} --help')" if path and isinstance(exc, _HINTED) else ""


def _no_type(ctx: Any) -> None:
    return None


def usage_line(exc: Exception) -> str:
    """The mistake in one line, and where the command's help is."""
    format_message = getattr(exc, "format_message", None)
    message = format_message() if callable(format_message) else str(exc)
    text = "; ".join(line.strip() for line in str(message).splitlines() if line.strip())
    ctx = getattr(exc, "ctx", None)
    path = getattr(ctx, "command_path", "") if ctx is not None else ""
    return f"{text} (see '{path} --help')" if path else text
