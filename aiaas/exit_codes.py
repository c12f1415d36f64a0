"""The exit codes of every `aiaas` command, and the one way a command fails.

One table, so that a script can tell "fix your input" from "try again later"
whatever the command: 2 is click's own code for a usage error, and a bad value
found later (a file, a SPEC, a name already taken) is the same mistake to the
user. Imports typer and our error table only.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from enum import IntEnum
from typing import Any, NoReturn, ParamSpec, TypeVar

import click
import typer

from aiaas.errors import AiaasError, NotFound, Unavailable

P = ParamSpec("P")
R = TypeVar("R")


class ExitCode(IntEnum):
    OK = 0
    #: The work was tried and did not succeed: parity, training, an unexpected error.
    FAILED = 1
    #: A bad flag, file, value or name; an action the current state refuses.
    BAD_INPUT = 2
    #: The model, version, alias or run asked for does not exist.
    NOT_FOUND = 3
    #: A registry that cannot be reached, a port in use: retrying later may succeed.
    UNAVAILABLE = 4
    #: Stopped by Ctrl-C, as a shell reports a command ended by SIGINT (128 + 2).
    INTERRUPTED = 130


def exit_code_for(error: AiaasError) -> ExitCode:
    """Read from the error's kind, as the protocol front ends read its HTTP status:
    422 (understood, could not be done: a parity failure) and 5xx are failures."""
    if isinstance(error, NotFound):
        return ExitCode.NOT_FOUND
    if isinstance(error, Unavailable):
        return ExitCode.UNAVAILABLE
    if error.http_status == 422 or error.http_status >= 500:
        return ExitCode.FAILED
    return ExitCode.BAD_INPUT


def fail(message: str, code: ExitCode) -> typer.Exit:
    """Print one plain line to stderr (a message of several lines is joined, as a
    database driver's often is) and return the exit to raise."""
    line = " ".join(part.strip() for part in message.splitlines() if part.strip())
    typer.echo(f"error: {line}", err=True)
    return typer.Exit(int(code))


def fail_with(error: AiaasError) -> typer.Exit:
    """`fail` with the error's message and the code its kind maps to."""
    return fail(error.message, exit_code_for(error))


def plain_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Our errors become one line and their code; anything else too (exit 1), unless
    AIAAS_DEBUG is set, which lets the traceback through for a bug report."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except AiaasError as error:
            raise fail_with(error) from None
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception as error:
            if os.environ.get("AIAAS_DEBUG"):
                raise
            raise fail(f"unexpected {type(error).__name__}: {error}", ExitCode.FAILED) from None

    return wrapper


class PlainTyper(typer.Typer):
    """A Typer whose usage errors (a bad flag value, a missing option) are one `error:`
    line naming the flag and what it allows, exit 2, instead of click's usage box."""

    def __call__(self, *args: Any, **kwargs: Any) -> NoReturn:
        kwargs["standalone_mode"] = False
        try:
            code = super().__call__(*args, **kwargs)
        except click.exceptions.NoArgsIsHelpError as error:  # typer has printed the help
            sys.exit(error.exit_code)
        except click.ClickException as error:
            typer.echo(f"error: {error.format_message()}".replace("\n", " "), err=True)
            sys.exit(error.exit_code)
        except click.Abort:
            typer.echo("error: aborted", err=True)
            sys.exit(ExitCode.FAILED)
        sys.exit(code if isinstance(code, int) else ExitCode.OK)
