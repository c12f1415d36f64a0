"""Typer options generated from a pydantic-settings class, so a flag is declared once.

Each field becomes `--field-name` with the field's description as help and its
default shown; the environment variable is named in the help but read by
pydantic-settings, not by click. Only the flags given on the command line are
passed to the class, which is what lets them beat the environment, and the
environment beat the defaults. Bad values end as one line and exit 2: click's own
checks (types, choices, ranges) for flags, pydantic's for the environment.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import annotated_types
import typer
from click.core import ParameterSource
from pydantic import ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, SettingsError

from aiaas.exit_codes import ExitCode, fail

S = TypeVar("S", bound=BaseSettings)


def settings_command(settings_class: type[S], run: Callable[[S], None]) -> Callable[..., None]:
    """A typer command whose options are `settings_class`'s fields; it calls `run`."""
    prefix = str(settings_class.model_config.get("env_prefix", ""))

    def command(ctx: typer.Context, **values: Any) -> None:
        given = {
            name: value
            for name, value in values.items()
            if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE
        }
        try:
            settings = settings_class(**given)
        except ValidationError as error:
            raise fail(_describe(error, given, prefix), ExitCode.BAD_INPUT) from None
        except SettingsError as error:  # an environment value pydantic-settings cannot parse
            raise fail(str(error), ExitCode.BAD_INPUT) from None
        run(settings)

    context = inspect.Parameter(
        "ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context
    )
    options = [_option(name, field, prefix) for name, field in settings_class.model_fields.items()]
    command.__signature__ = inspect.Signature([context, *options])  # type: ignore[attr-defined]
    command.__doc__ = run.__doc__
    return command


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def _option(name: str, field: FieldInfo, prefix: str) -> inspect.Parameter:
    bounds: dict[str, Any] = {}
    for rule in field.metadata:
        if isinstance(rule, annotated_types.Ge):
            bounds["min"] = rule.ge
        elif isinstance(rule, annotated_types.Le):
            bounds["max"] = rule.le
    flag = flag_name(name)
    if field.annotation is bool:  # so that a flag can also turn off what the environment set
        flag = f"{flag}/--no-{flag[2:]}"
    env = f"{prefix}{name}".upper()
    option = typer.Option(flag, help=f"{field.description or ''} (env {env})".strip(), **bounds)
    default = field.get_default(call_default_factory=True)
    if default == []:  # typer's "not given" for a repeatable option
        default = None
    return inspect.Parameter(
        name,
        inspect.Parameter.KEYWORD_ONLY,
        annotation=Annotated[field.annotation, option],
        default=default,
    )


def _describe(error: ValidationError, given: dict[str, Any], prefix: str) -> str:
    """The first problem, named as the user wrote it: a flag, or an environment variable."""
    first = error.errors()[0]
    field = str(first["loc"][0]) if first["loc"] else ""
    where = flag_name(field) if field in given else f"{prefix}{field}".upper()
    value = f" (got {first['input']!r})" if field and field not in given else ""
    return f"{where}: {first['msg']}{value}"
