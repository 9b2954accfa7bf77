"""The Typer app, its error handling and the helpers every command shares."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, time
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TypeVar

import typer

from memagent.cli import render
from memagent.config import Settings, get_settings
from memagent.errors import InputError, MemagentError, first_line
from memagent.redact import redact
from memagent.validation import clean_date

if TYPE_CHECKING:
    from memagent.bootstrap import App
    from memagent.usecases.service import MemoryService

P = ParamSpec("P")
R = TypeVar("R")

app = typer.Typer(
    name="memagent",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: flags without a "<bool>" value, and nothing to load for --help
)

_state = {"debug": False}


@app.callback()
def _root(
    debug: Annotated[
        bool, typer.Option("--debug", envvar="MEMAGENT_DEBUG", help="Show tracebacks on errors.")
    ] = False,
) -> None:
    """Persistent long-term memory for AI agents, in PostgreSQL with pgvector.

    With no MEMAGENT_DATABASE_URL an embedded PostgreSQL is started on demand; with no OPENAI_API_KEY
    texts are embedded by the bundled local model.
    """
    _state["debug"] = debug


def handled(func: Callable[P, R]) -> Callable[P, R]:
    """Map MemagentError (and Ctrl-C) to one red line on stderr and a non-zero exit."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except MemagentError as exc:
            if _state["debug"]:
                print_traceback()
            render.error_line(redact(str(exc)))
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            render.error_line("interrupted.")
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:  # a bug: still one line, the traceback on request
            if _state["debug"]:
                print_traceback()
            what = f"{type(exc).__name__}: {first_line(exc, 'no message')}"
            render.error_line(redact(f"unexpected {what} (run with --debug for the traceback)."))
            raise typer.Exit(1) from None

    return wrapper


def print_traceback() -> None:
    """The current exception's traceback on stderr, with keys and passwords replaced by ***."""
    import traceback

    sys.stderr.write(redact(traceback.format_exc()))


@contextmanager
def open_service(settings: Settings) -> Iterator[MemoryService]:
    """Open memagent for one command (catch-up messages on stderr); released when the command ends."""
    from memagent.bootstrap import open_service as open_now

    with open_now(settings, notify=render.message) as service:
        yield service


def lazy_app(settings: Settings) -> App:
    """memagent for a command that must work even when the database cannot be reached (remember, chat)."""
    from memagent.bootstrap import App

    return App(settings, notify=render.message)


def load_settings() -> Settings:
    """The settings of this run (environment and .env)."""
    return get_settings()


def parse_before(value: str, option: str = "--before") -> datetime:
    """A date option's value (--before, --as-of); a bare date or time means the user's local time."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InputError(f"{option} {value!r} is not a date; use YYYY-MM-DD or YYYY-MM-DDTHH:MM.") from None
    if parsed.tzinfo is None and len(value) <= 10:  # a bare date: from its start, in the user's time zone
        parsed = datetime.combine(parsed.date(), time.min)
    return clean_date(parsed, f"{option} date")


def json_option(value: str, option: str) -> Any:
    """An option's JSON value (--metadata), or one line saying what is wrong with it."""
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise InputError(f"{option} is not valid JSON: {exc.msg} at position {exc.pos}.") from None
    except RecursionError:
        raise InputError(f"{option} is nested too deeply.") from None


def read_stdin() -> str:
    """The text piped on stdin, which must be UTF-8."""
    if sys.stdin is None or sys.stdin.isatty():
        raise InputError("give the text as an argument, or pipe it on stdin.")
    raw = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read().encode()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"stdin is not valid UTF-8 (byte {exc.start}).") from None


NamespaceOpt = Annotated[
    str | None,
    typer.Option("--namespace", "-n", help="Namespace (default: MEMAGENT_NAMESPACE or 'default')."),
]
SessionOpt = Annotated[str | None, typer.Option("--session", "-s", help="Only this session.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON to stdout instead of a table.")]


def confirm_or_refuse(question: str, *, refusal: str, yes: bool) -> None:
    """Go on with --yes, or when the user agrees at a terminal; without a terminal, refuse in one line."""
    if yes:
        return
    if sys.stdin is None or not sys.stdin.isatty():
        raise InputError(refusal)
    if not typer.confirm(question, err=True):
        render.message("Nothing done.")
        raise typer.Exit(1)
