"""The ``task-import`` command: a thin layer that wires options to the library."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import secrets
import signal
import socket
import sys
import tempfile
import tomllib
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

import click
import platformdirs
from tqdm import tqdm

from . import _api as api
from .check import RESULTS
from .client import AuthError, Credentials, IvvyClient, IvvyError, TransportError
from .errors import ImporterError, UsageError
from .journal import Journal, default_journal_path, is_postgres, list_runs, shown_state
from .model import ProgressEvent
from .options import BESIDE, Blanks, Missing, RunOptions, parse_clock
from .profiles import PROFILES
from .reconcile import SETTLE
from .sandbox import (
    DEFAULT_KEY,
    DEFAULT_SECRET,
    KNOBS,
    SandboxConfig,
    SandboxServer,
    SeedError,
    load_seed,
    serve,
)
from .send import DEFAULT_CALLBACK
from .template import write_template

# Retries are the send stage's business and end up in the results; the retry library's own log
# lines would only be noise on a user's terminal.

EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130


def _fail(message: str, code: int, as_json: bool = False) -> None:
    click.echo(f"task-import: {message}", err=True)
    if as_json:  # a scheduler reading the last line of stdout reads why, too
        click.echo(json.dumps({"error": message, "exit_code": code}))
    sys.exit(code)


def _log_unexpected(exc: BaseException) -> Path:
    folder = Path(platformdirs.user_log_dir("ivvy-task-importer", appauthor=False))
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "task-import.log"
    with log.open("a", encoding="utf-8") as handle:
        handle.write("".join(traceback.format_exception(exc)))
    return log


def user_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn what can go wrong into one line on stderr and the contract's exit code."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        as_json = bool(kwargs.get("as_json"))
        try:
            return command(*args, **kwargs)
        except click.ClickException as exc:  # a usage error of click's kind: click shows it
            if as_json:
                click.echo(json.dumps({"error": exc.format_message(), "exit_code": exc.exit_code}))
            raise
        except (click.exceptions.Exit, click.Abort):
            raise
        except ImporterError as exc:
            _fail(str(exc), exc.exit_code, as_json)
        except AuthError as exc:
            _fail(
                f"iVvy refused the credentials ({exc.full_message}): check IVVY_API_KEY, "
                "IVVY_API_SECRET and this machine's clock; nothing was sent",
                EXIT_UNREACHABLE,
                as_json,
            )
        except TransportError as exc:
            _fail(f"cannot reach iVvy: {exc}; nothing was sent", EXIT_UNREACHABLE, as_json)
        except IvvyError as exc:
            _fail(
                f"iVvy answered an error before any row was sent: {exc}", EXIT_UNREACHABLE, as_json
            )
        except KeyboardInterrupt:
            _fail("interrupted", EXIT_INTERRUPTED, as_json)
        except Exception as exc:
            log = _log_unexpected(exc)
            _fail(
                f"unexpected error ({type(exc).__name__}: {exc}); details in {log}. "
                "Please report it.",
                1,
                as_json,
            )

    return wrapper


def _column_pairs(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """``--column 'Finish=endDatetime'``, repeated, as ``{"Finish": "endDatetime"}``."""
    pairs: dict[str, str] = {}
    for given in value or ():
        column, sign, target = str(given).rpartition("=")
        if not sign or not column.strip() or not target.strip():
            raise click.BadParameter(f"{given!r}: write it COLUMN=FIELD, e.g. 'Finish=endDatetime'")
        pairs[column.strip()] = target.strip()
    return pairs or None


def source_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options that say how to read and map a source, shared by the commands that read one."""
    options = [
        click.option("--sheet", help="Workbook sheet: its name, or its position from 1 "
                     "(default: the first visible sheet with data)."),
        click.option("--encoding", help="Text encoding of a CSV (default: detected)."),
        click.option("--header-row", type=click.IntRange(min=1), metavar="N",
                     help="The row holding the column names, by its number in the sheet "
                     "(default: found, passing over title and note rows)."),
        click.option("--profile", type=click.Choice(sorted(PROFILES)),
                     help="Read the task export of another CRM."),
        click.option("--mapping", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     help="TOML file: which column feeds which field, extra status and "
                     "priority words, options."),
        click.option("--column", "columns", multiple=True, metavar="COLUMN=FIELD",
                     callback=_column_pairs,
                     help="Map one column to a field (or 'ignore'), over the mapping file: "
                     "--column 'Finish=endDatetime'. Repeatable."),
        click.option("--timezone", help="IANA zone of the sheet's dates and times (default UTC), "
                     "or 'venue' for the zone of --venue-id."),
        click.option("--venue-id", type=click.IntRange(min=1), help="The default venue."),
        click.option("--date-order", type=click.Choice(["dmy", "mdy"]),
                     help="How to read 03/04/2026 (default: decided from the whole column)."),
        click.option("--default-time", callback=_clock_option, metavar="HH:MM",
                     help="Time of day for dates without one (default 09:00, in --timezone)."),
        click.option("--key", metavar="COLUMN",
                     help="A column that identifies each row (a legacy id): a value twice is "
                     "refused."),
    ]  # fmt: skip

    inner = command

    @functools.wraps(inner)
    def defaults_known(*args: Any, **kwargs: Any) -> Any:
        # A zone from the configuration file is a default: a profile that knows the zone its
        # export writes times in wins over it (a zone given on the command line does not).
        ctx = click.get_current_context()
        if kwargs.get("timezone") is not None and (
            ctx.get_parameter_source("timezone") is click.core.ParameterSource.DEFAULT_MAP
        ):
            kwargs["default_timezone"] = kwargs.pop("timezone")
            kwargs["timezone"] = None
        return inner(*args, **kwargs)

    command = defaults_known
    for option in reversed(options):
        command = option(command)
    return command


class _StateType(click.ParamType):
    """A journal file's path, or a PostgreSQL database's URL (``postgresql://…``)."""

    name = "PATH|URL"

    def convert(self, value: Any, param: Any, ctx: Any) -> Path | str | None:
        if is_postgres(value):
            return str(value)
        click.Path(dir_okay=False).convert(value, param, ctx)
        return Path(value)


def state_option(help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--state PATH|postgresql://…``: the journal, for the commands that use one."""
    return click.option(
        "--state", type=_StateType(), envvar="IVVY_STATE", show_envvar=True, help=help
    )


def settle_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--settle-s``: how long a lost create waits before it is looked up (run and serve)."""
    return click.option(
        "--settle-s",
        "settle",
        type=click.FloatRange(min=0.0),
        default=SETTLE,
        show_default=True,
        help="How long a create whose answer was lost waits before it is looked up: the bound "
        "on late writes and lagging list reads.",
    )(command)


def only_option(help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--only RESULTS``: the earlier results to pick from a results sheet."""
    return click.option(
        "--only", metavar="RESULTS", callback=lambda ctx, param, value: _only(value), help=help
    )


def output_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--json and --quiet, for the commands that end with a summary."""
    command = click.option("--quiet", is_flag=True, help="Print nothing but errors.")(command)
    return click.option(
        "--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout."
    )(command)


def _clock_option(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    try:
        return parse_clock(value)
    except ImporterError as exc:
        raise click.BadParameter(str(exc)) from None


@contextmanager
def _target(use_sandbox: bool) -> Iterator[Credentials]:
    """Credentials from the environment, or those of a fresh sandbox started for this command."""
    if not use_sandbox:
        yield Credentials.from_env(_environ())
        return
    config = SandboxConfig(key=f"embedded-{secrets.token_hex(4)}", secret=secrets.token_hex(16))
    with SandboxServer(config) as sandbox:
        yield sandbox.credentials


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ivvy-task-importer")
@click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar="IVVY_CONFIG",
    help="TOML file: api_key, region or base_url, and a table of option defaults per command "
    "([run], [validate]…). Never the secret. Also IVVY_CONFIG.",
)
@click.pass_context
def main(ctx: click.Context, config: Path | None) -> None:
    """Import a spreadsheet of tasks into iVvy.

    \b
    Try it with no account, on a local sandbox:
      task-import run sample_data/tasks.csv --sandbox
    Into your account (IVVY_API_KEY, IVVY_API_SECRET, IVVY_REGION=au|us|uk):
      task-import ping
      task-import validate tasks.csv
      task-import run tasks.csv
    Start from the template:
      task-import template tasks.xlsx
    """
    # The command line shows retries its own way: stamina's log lines stay out of the terminal
    # (set here, when the command runs, not when the module is imported).
    logging.getLogger("stamina").addHandler(logging.NullHandler())
    logging.getLogger("stamina").propagate = False
    if config is not None:
        try:
            ctx.default_map, ctx.obj = load_config(config, main)
        except ImporterError as exc:
            _fail(str(exc), exc.exit_code)


def _environ() -> dict[str, str]:
    """The environment, over what a config file set (the environment wins); the process's own
    environment is never changed."""
    ctx = click.get_current_context(silent=True)
    given = ctx.find_root().obj if ctx is not None else None
    return {**(given if isinstance(given, dict) else {}), **os.environ}


#: Config file keys → the environment variables they stand in for (the environment wins).
_CONFIG_ENV = {"api_key": "IVVY_API_KEY", "region": "IVVY_REGION", "base_url": "IVVY_BASE_URL"}


def load_config(path: Path, group: click.Group) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Read a config file: the defaults of each command's options from its tables (``click``'s
    default map), and its credentials (all but the secret) as environment variables the
    environment's own override."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"config file {path}: {exc}") from None
    if any("secret" in str(k).lower() for k in data):
        raise UsageError(
            f"config file {path} holds a secret: remove it and set IVVY_API_SECRET in the "
            "environment (a file of settings gets copied and shared; the secret must not be)"
        )
    defaults: dict[str, dict[str, Any]] = {}
    environ: dict[str, str] = {}
    for key, value in data.items():
        if key in _CONFIG_ENV:
            environ[_CONFIG_ENV[key]] = str(value)
            continue
        command = group.commands.get(key)
        if command is None or not isinstance(value, dict):
            known = ", ".join([*_CONFIG_ENV, *(f"[{c}]" for c in group.commands)])
            raise UsageError(f"config file {path}: unknown setting {key!r}; known: {known}")
        # Options by their long flags, as a person writes them: "venue-id", "json".
        names = {
            flag.lstrip("-"): p.name
            for p in command.params
            if isinstance(p, click.Option) and p.name
            for flag in p.opts
            if flag.startswith("--") and flag not in ("--help",)
        }
        table = {}
        for option, setting in value.items():
            name = names.get(str(option).replace("_", "-"))
            if name is None:
                raise UsageError(
                    f"config file {path}: [{key}] has no option {option!r}; its options: "
                    f"{', '.join(sorted(names))}"
                )
            table[name] = setting
        defaults[key] = table
    return defaults, environ


@main.command()
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--sandbox", "use_sandbox", is_flag=True, help="Import into a local sandbox.")
@click.option(
    "--results",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Where to write the results, .xlsx or .csv (default: beside the source, "
    "NAME.results.xlsx for a workbook, NAME.results.csv for a text file).",
)
@state_option(
    "The journal: a file (default: one per target in the user's data folder; with --sandbox, "
    "a temporary one), or a PostgreSQL database (postgresql://user@host/db), which outlives "
    "a worker without a lasting disk."
)
@click.option("--resume", is_flag=True, help="Go on with this source's stopped run.")
@click.option(
    "--new-run",
    is_flag=True,
    help="Go through a source already imported into this target again: rows that have a "
    "task are left unchanged, or updated where they changed; never created twice.",
)
@click.option(
    "--update-existing",
    is_flag=True,
    default=None,
    help="Rows may update iVvy tasks this tool did not make (the source's task ids are meant).",
)
@only_option(
    "For a results sheet given as SOURCE: send again only the rows with these earlier "
    "results (e.g. failed,invalid); a row with a task_id is that task's (updated, or unchanged)."
)
@click.option(
    "--max-changes",
    metavar="N|P%",
    help="Refuse (exit 2, nothing sent) a run whose plan would update more tasks than this "
    "(a number, or a share such as 20%).",
)
@click.option(
    "--missing",
    type=click.Choice(["ignore", "report", "cancel"]),
    default="report",
    show_default=True,
    help="With --key: the keys earlier exports held that this one does not are listed in the "
    "results (report), their tasks set to Cancelled (cancel), or neither (ignore).",
)
@click.option(
    "--max-shrink",
    metavar="P%",
    default="20%",
    show_default=True,
    help="With --key: a source with this share fewer rows than the last run's (or none) "
    "cancels nothing and ends with exit 1 (a broken export, not tasks to cancel).",
)
@click.option(
    "--overwrite-edits",
    is_flag=True,
    help="Send an update although its task was changed in iVvy since this tool last wrote it "
    "(by default such a row ends 'conflict', with the fields that differ, and is not sent).",
)
@click.option(
    "--blanks",
    type=click.Choice(["keep", "clear"]),
    default="keep",
    show_default=True,
    help="What an update does with a blank description cell: leaves the task's description as "
    "it is (keep), or clears it (clear; read back to check that iVvy did). Other fields are "
    "never cleared: iVvy documents no empty value for them.",
)
@click.option(
    "--notify",
    metavar="URL",
    help="POST the JSON summary (with a Slack-style text line) to this webhook when the run "
    "needs attention, and once when a later run recovers.",
)
@click.option(
    "--max-rejects",
    metavar="N|P%",
    help="Rows invalid or failed that still let the run end with exit 0 (a number, or a share "
    "such as 2%): every valid row is sent either way; above it, exit 1.",
)
@click.option(
    "--trust-empty-journal",
    is_flag=True,
    help="With --key: begin although the journal knows no keys while the account holds tasks "
    "like the first rows (it is refused otherwise: a lost journal would create every task again).",
)
@click.option(
    "--recreate-missing",
    is_flag=True,
    help="A task deleted in iVvy since it was imported (24392) is created again.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 64),
    default=32,
    show_default=True,
    help="The most rows in flight at once (fewer while the measured latency needs fewer).",
)
@click.option(
    "--via",
    type=click.Choice(["rows", "batch"]),
    default="rows",
    show_default=True,
    help="One request per row, or up to 200 rows per batch request.",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0.1),
    help="A ceiling in requests per second (default: as fast as iVvy allows, found by probing).",
)
@settle_option
@click.option(
    "--callback-url",
    default=DEFAULT_CALLBACK,
    show_default=True,
    help="Batch mode: the callbackUrl sent with each batch (the importer polls for results; "
    "the default never resolves).",
)
@click.option(
    "--batch-wait",
    type=click.FloatRange(min=1.0),
    default=300.0,
    show_default=True,
    help="Batch mode: seconds a batch may take to complete; its rows are then settled by the "
    "next run, never sent again blind.",
)
@source_options
@click.option(
    "--all-or-nothing",
    is_flag=True,
    help="Send nothing when any row is invalid (for migrations that must be whole).",
)
@output_options
@user_errors
def run(
    source: Path,
    use_sandbox: bool,
    results: Path | None,
    concurrency: int,
    via: str,
    rate: float | None,
    all_or_nothing: bool,
    state: Path | str | None,
    resume: bool,
    new_run: bool,
    only: frozenset[str] | None,
    max_changes: str | None,
    missing: Missing,
    max_shrink: str,
    overwrite_edits: bool,
    blanks: Blanks,
    notify: str | None,
    max_rejects: str | None,
    trust_empty_journal: bool,
    recreate_missing: bool,
    settle: float,
    callback_url: str,
    batch_wait: float,
    update_existing: bool | None,
    as_json: bool,
    quiet: bool,
    **source_args: Any,
) -> None:
    """Import every row of SOURCE as an iVvy task and write the results sheet.

    Every row's state is kept in a journal: a stopped or killed run goes on with --resume, and
    a source already imported is not imported twice (with --key, a nightly re-run updates the
    rows that changed and leaves the others alone).

    \b
    Exit codes: 0 every row done; 1 some rows invalid, failed or in conflict (see the
    results), a keyed run's source looked broken (--max-shrink), or a field sent empty was
    not cleared (--blanks clear);
    2 bad invocation or unreadable source; 3 iVvy unreachable or credentials refused (or the
    session ended mid-run: 462/463); 130 interrupted.

    \b
    Examples:
      task-import run sample_data/tasks.csv --sandbox
      task-import run tasks.csv --results out/tasks.results.xlsx --json
      task-import run tasks.csv --resume
      task-import run export.csv --key "Legacy Id"
      task-import run tasks.results.xlsx --only failed,invalid
    """
    if resume and new_run:
        raise click.UsageError("--resume goes on with a run; --new-run begins one: give one")
    with _target(use_sandbox) as credentials, _state(state, use_sandbox) as journal:
        options = RunOptions(
            results=results or BESIDE,
            concurrency=concurrency,
            via=via,
            rate=rate,
            all_or_nothing=all_or_nothing,
            state=journal,
            resume=resume,
            new_run=new_run,
            only=only,
            recreate_missing=recreate_missing,
            trust_empty=trust_empty_journal,
            max_rejects=max_rejects,
            notify=notify,
            max_changes=max_changes,
            missing=missing,
            max_shrink=max_shrink,
            overwrite_edits=overwrite_edits,
            blanks=blanks,
            settle=settle,
            callback_url=callback_url,
            batch_wait=batch_wait,
            update_existing=update_existing or None,
            **source_args,
        )
        show = not (quiet or as_json) and sys.stderr.isatty()
        try:
            summary = asyncio.run(_run(source, credentials, options, show_progress=show))
        except asyncio.CancelledError:
            _fail(
                "stopped at once (second Ctrl-C): no results were written; the journal holds "
                "every row's state: --resume goes on (rows in flight are looked up first)",
                EXIT_INTERRUPTED,
            )
    _report(summary, as_json=as_json, quiet=quiet)


def _only(value: str | None) -> frozenset[str] | None:
    if value is None:
        return None
    chosen = frozenset(v.strip().lower() for v in value.split(",") if v.strip())
    if unknown := chosen - RESULTS:
        raise click.BadParameter(
            f"{', '.join(sorted(unknown))}: the results are {', '.join(sorted(RESULTS))}"
        )
    return chosen


@contextmanager
def _state(state: Path | str | None, use_sandbox: bool) -> Iterator[Path | str | None]:
    """The journal to use: the one given; for an embedded sandbox (which ends with the
    command), a temporary one; else ``None`` (the target's default)."""
    if state is not None or not use_sandbox:
        yield state
        return
    with tempfile.TemporaryDirectory(prefix="task-import-") as folder:
        yield Path(folder) / "journal.sqlite"


def _report(summary: Any, *, as_json: bool, quiet: bool) -> None:
    if as_json:
        click.echo(json.dumps(summary.as_dict()))
    elif not quiet:
        for warning in summary.warnings:
            click.echo(f"warning: {warning}", err=True)
        click.echo(summary.describe())
    if getattr(summary, "refusal", None):
        click.echo(f"task-import: a run would be refused: {summary.refusal}", err=True)
    sys.exit(summary.exit_code)


@main.command("validate")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--sandbox", "use_sandbox", is_flag=True, help="Check against a local sandbox.")
@click.option("--offline", is_flag=True, help="Skip the checks that need iVvy.")
@click.option(
    "--results",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Where to write the verdicts, .xlsx or .csv (default: beside the source, "
    "NAME.validation.xlsx for a workbook, NAME.validation.csv for a text file).",
)
@state_option("The journal the plan is read from (default: the target's).")
@only_option("For a results sheet given as SOURCE: check only the rows with these earlier results.")
@click.option(
    "--update-existing",
    is_flag=True,
    default=None,
    help="Plan as a run given --update-existing would (rows may update tasks this tool did "
    "not make).",
)
@source_options
@output_options
@user_errors
def validate_command(
    source: Path,
    use_sandbox: bool,
    offline: bool,
    results: Path | None,
    state: Path | str | None,
    only: frozenset[str] | None,
    update_existing: bool | None,
    as_json: bool,
    quiet: bool,
    **source_args: Any,
) -> None:
    """Check every row of SOURCE as a run would, and send nothing.

    Online checks (that ids, users and venues exist; e-mails resolved) run when credentials
    are set (IVVY_API_KEY, IVVY_API_SECRET) or with --sandbox; otherwise only the offline ones.
    Writes the results sheet with `valid` or `invalid` per row, each valid row's message saying
    what a run would do with it (create, update a task this tool made, update a task it did not
    make, unchanged), from the journal; the plan's counts are printed. Exit 2 when the run would
    be refused (rows updating tasks this tool did not make, without --update-existing).

    \b
    Exit codes: 0 every row valid; 1 some rows invalid; 2 unreadable source or bad options, or
    the run would be refused; 3 iVvy unreachable or credentials refused.

    \b
    Examples:
      task-import validate tasks.csv
      task-import validate tasks.xlsx --sheet Tasks --offline
      task-import validate export.csv --key "Legacy Id"
    """
    options = RunOptions(
        results=results or BESIDE, state=state, only=only,
        update_existing=update_existing or None, **source_args,
    )  # fmt: skip
    environ = _environ()
    online = not offline and (use_sandbox or bool(environ.get("IVVY_API_KEY")))
    if not online:
        target = None
        if environ.get("IVVY_API_KEY") and environ.get("IVVY_API_SECRET"):
            target = Credentials.from_env(environ).target  # for the plan of --key
        summary = api.validate(source, options=options, offline=True, target=target)
    else:
        with _target(use_sandbox) as credentials:
            summary = api.validate(source, credentials=credentials, options=options)
    if not as_json and not quiet and summary.codes:
        codes = ", ".join(f"{code}: {n}" for code, n in sorted(summary.codes.items(), key=str))
        click.echo(f"invalid rows by code: {codes}", err=True)
    _report(summary, as_json=as_json, quiet=quiet)


async def _run(
    source: Path, credentials: Credentials, options: RunOptions, *, show_progress: bool
) -> Any:
    """The run, with Ctrl-C/SIGTERM handled (the first stops taking rows and lets those in
    flight finish; the second stops at once) and a progress bar on a terminal."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()
    signals = [s for s in (signal.SIGINT, signal.SIGTERM) if hasattr(signal, s.name)]

    def on_signal() -> None:
        if stop.is_set():
            if main_task is not None:
                main_task.cancel()
            return
        stop.set()
        click.echo(
            "\nstopping: no new rows; rows in flight get a few seconds to finish "
            "(Ctrl-C again stops at once)",
            err=True,
        )

    for number in signals:
        # Not in the main thread (a test runner), or on Windows: Ctrl-C interrupts as usual.
        with suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(number, on_signal)
    bar: Any = None

    def on_event(event: ProgressEvent) -> None:
        nonlocal bar
        if not show_progress:
            return
        if event.kind == "started":
            bar = tqdm(total=event.total, unit="row", file=sys.stderr, dynamic_ncols=True)
        elif event.kind == "row" and bar is not None:
            bar.set_postfix(failures=event.failures, refresh=False)
            bar.update(1)

    try:
        return await api.run_async(
            source, credentials=credentials, options=options, on_event=on_event, stop=stop
        )
    finally:
        if bar is not None:
            bar.close()
        for number in signals:
            with suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(number)


@main.command()
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False))
@user_errors
def template(path: Path) -> None:
    """Write the import template to PATH (.xlsx with dropdowns and instructions, or .csv).

    \b
    Examples:
      task-import template tasks.xlsx
      task-import template tasks.csv
    """
    write_template(path)
    click.echo(
        f"wrote {path}: fill in one row per task, then: task-import validate {path} "
        f"(checks, sends nothing) and task-import run {path}"
    )


@main.command()
@state_option("The journal (default: the target's).")
@click.option(
    "--forget-older-than",
    "days",
    type=click.IntRange(min=0),
    metavar="DAYS",
    help="Delete the rows of runs that ended more than DAYS ago (the keys of --key stay).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the runs as JSON.")
@user_errors
def runs(state: Path | str | None, days: int | None, as_json: bool) -> None:
    """List the runs into this target that the journal holds (the numbers undo takes), or
    prune old ones. The target is that of the credentials (environment or --config).

    \b
    Examples:
      task-import runs
      task-import runs --forget-older-than 90
    """
    target = Credentials.from_env(_environ()).target
    path = state or default_journal_path(target)
    if days is not None:
        with Journal(path, target=target) as journal:
            before = datetime.now(UTC) - timedelta(days=days)
            pruned, rows = journal.prune(target, before)
        click.echo(f"pruned {pruned} runs ({rows} rows) that ended before {before:%Y-%m-%d}")
        return
    listed = list_runs(path, target)
    if as_json:
        click.echo(json.dumps([
            {"run": r.id, "kind": r.kind, "status": r.status, "started": r.started,
             "finished": r.finished, "source": r.source, "results": r.results,
             "undoes": r.undoes, "counts": dict(c)}
            for r, c in listed
        ]))  # fmt: skip
        return
    if not listed:
        click.echo(f"no runs into {target} in {shown_state(path)}")
        return
    for record, counts in listed:
        parts = ", ".join(f"{n} {result}" for result, n in sorted(counts.items()))
        what = f"undo of run {record.undoes}" if record.kind == "undo" else record.kind
        status = record.status
        if status == "killed":
            status = "killed (its process is gone: give the same command with --resume to go on)"
        click.echo(
            f"run {record.id}: {what}, {status}, started {record.started}, "
            f"{Path(record.source).name}: {parts or 'no rows'}"
        )


@main.command()
@click.argument("run_id", metavar="[RUN]", type=int, required=False)
@state_option("The journal (default: the target's).")
@click.option(
    "--results",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Where to write what was undone (default: NAME.undo-RUN.csv beside the run's results).",
)
@click.option(
    "--plan",
    "plan_only",
    is_flag=True,
    help="List what the undo would do (cancel, put back, leave) and send nothing.",
)
@output_options
@user_errors
def undo(
    run_id: int | None,
    state: Path | str | None,
    results: Path | None,
    plan_only: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    """Undo import RUN (default: the latest into this target): set every task it created to
    Cancelled (iVvy has no task delete), and put back the values of every task it updated
    (read from iVvy before the update). A task changed in iVvy since the run wrote it is left
    as it is, and listed.

    A stopped undo goes on where it stopped when given again. RUN is the run number that
    `task-import run` printed (--json gives it as "run"; `task-import runs` lists them).

    \b
    Examples:
      task-import undo --plan
      task-import undo
      task-import undo 12 --json
    """
    credentials = Credentials.from_env(_environ())

    summary = api.undo(run_id, credentials=credentials, state=state, results=results or BESIDE,
                       plan_only=plan_only)  # fmt: skip
    if not as_json and not quiet:
        plan = summary.plan
        left = summary.counts.get("skipped", 0)
        what = "would undo" if plan_only else "undid"
        click.echo(
            f"{what} run {summary.undoes}: {plan.get('cancel', 0)} tasks "
            f"{'to set' if plan_only else 'set'} to Cancelled, {plan.get('restore', 0)} "
            f"{'to put' if plan_only else 'put'} back as they were"
            + (f", {left} left as they are (why: in the results)" if left else ""),
            err=True,
        )
    _report(summary, as_json=as_json, quiet=quiet)


@main.command()
@click.option("--sandbox", "use_sandbox", is_flag=True, help="Ping a local sandbox instead.")
@user_errors
def ping(use_sandbox: bool) -> None:
    """Check the credentials and the connection to iVvy.

    \b
    Example:
      IVVY_API_KEY=... IVVY_API_SECRET=... IVVY_REGION=au task-import ping
    """
    with _target(use_sandbox) as credentials:

        async def go() -> tuple[Any, str | None]:
            async with IvvyClient(credentials) as client:
                return await client.measure_clock(), client.clock_note

        answer, clock_note = asyncio.run(go())
    stamp = None
    if isinstance(answer, dict):
        stamp = answer.get("ack") or answer.get("timestamp")
    click.echo(f"OK: {credentials.target} accepted the key" + (f" ({stamp})" if stamp else ""))
    if clock_note:
        click.echo(f"note: {clock_note}", err=True)


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _check_credentials(credentials: Credentials) -> None:
    """Before the page starts: the account must take the key, or the page would only say
    so when a person's import fails. UsageError (exit 2) saying what to fix when it refuses
    it; a warning when it does not answer (the page starts: imports wait until it does)."""

    async def go() -> None:
        async with IvvyClient(credentials, read_attempts=2) as client:
            await client.ping()

    try:
        asyncio.run(go())
    except AuthError as exc:
        raise UsageError(
            f"{credentials.target} refused the API key ({exc}): check IVVY_API_KEY and "
            "IVVY_API_SECRET (or the --config file) and IVVY_REGION, then start the page again"
        ) from None
    except IvvyError as exc:
        click.echo(
            f"warning: {credentials.target} did not answer a ping ({exc}): the page starts, "
            "and imports fail until it answers",
            err=True,
        )


@main.command("serve")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Where to listen; any address but loopback needs the printed token.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8765,
    show_default=True,
    help="The port (0: any free one).",
)
@click.option(
    "--sandbox", "use_sandbox", is_flag=True, help="Import into a local sandbox instead of iVvy."
)
@state_option("The journal (default: the target's, as for run).")
@click.option(
    "--max-upload-mb",
    type=click.IntRange(1, 2048),
    default=50,
    show_default=True,
    help="The largest file the page takes.",
)
@settle_option
@user_errors
def serve_command(
    host: str,
    port: int,
    use_sandbox: bool,
    state: Path | str | None,
    max_upload_mb: int,
    settle: float,
) -> None:
    """Serve the import page: upload a sheet, map its columns, fix its rows, import them and
    download the results, in the browser. Credentials come from the environment or --config,
    as for run; nothing of the secret reaches the page.

    \b
    Examples:
      task-import serve --sandbox
      task-import serve --port 8765
      task-import serve --host 0.0.0.0     # prints an address with an access token
    """
    import uvicorn

    from .serve import Page, ServeConfig, loopback_hosts

    with (
        _target(use_sandbox) as credentials,
        _state(state, use_sandbox) as journal,
        tempfile.TemporaryDirectory(prefix="task-import-serve-") as scratch,
    ):
        if not use_sandbox:
            _check_credentials(credentials)
        uploads = (
            Path(scratch) / "uploads"
            if use_sandbox
            else platformdirs.user_data_path("ivvy-task-importer", appauthor=False) / "uploads"
        )
        loopback = host in LOOPBACK
        token = None if loopback else secrets.token_urlsafe(24)
        # The page names the account by its address and the key's last characters only.
        label = (
            "a local sandbox (nothing reaches iVvy)"
            if use_sandbox
            else f"{credentials.base_url} (the API key ending …{credentials.key[-4:]})"
        )
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((host, port))
            # Listening from now on: a browser (or a test) that opens the printed address before
            # uvicorn has started waits in the queue, it is not refused.
            listener.listen(2048)
        except OSError as exc:
            raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        bound = listener.getsockname()[1]
        hosts = loopback_hosts(bound) if loopback else None
        page = Page(ServeConfig(credentials, uploads, journal, token, max_upload_mb << 20, label,
                                hosts=hosts, settle=settle))  # fmt: skip
        address = page_address(host, bound)
        click.echo(
            f"The import page: {address}"
            + (f"?token={token}" if token else "")
            + f"\nSending to: {label}. Ctrl-C stops it.",
            err=True,
        )
        # A stop answers within seconds whatever runs: the requests in flight get 2 s.
        config = uvicorn.Config(page.app, log_level="warning", lifespan="on",
                                timeout_graceful_shutdown=2)  # fmt: skip
        # The page's work runs in threads beside the event loop: a short switch interval lets
        # the loop take the interpreter back within a millisecond, not five, each time it
        # waits for it (a page takes a few dozen of those), so pages answer while a large file
        # is checked.
        sys.setswitchinterval(0.0005)
        # uvicorn stops gracefully on SIGTERM, then raises it again: here that ends the with
        # blocks (the temporary folders go) and the command, with exit 0.
        previous = signal.signal(signal.SIGTERM, _stopped)
        try:
            uvicorn.Server(config).run(sockets=[listener])
        finally:
            signal.signal(signal.SIGTERM, previous)


def page_address(host: str, port: int) -> str:
    """The page's address as printed: one another machine can open when the page listens on
    every interface (the machine's name, not 0.0.0.0), an IPv6 address in brackets."""
    shown = socket.getfqdn() if host in ("0.0.0.0", "::", "") else host
    shown = f"[{shown}]" if ":" in shown else shown
    return f"http://{shown}:{port}/"


def _stopped(signum: int, frame: Any) -> None:
    raise SystemExit(0)


def _knob_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """One option per knob of :class:`SandboxConfig`, from its type, default and help."""
    hints = get_type_hints(SandboxConfig)
    for knob in reversed(KNOBS):
        name = "--" + knob.name.replace("_", "-")
        default = knob.default
        hint = hints[knob.name]
        choices = get_args(hint) if get_origin(hint) is Literal else None
        kwargs: dict[str, Any] = {"default": default, "show_default": True,
                                  "help": knob.metadata["help"]}  # fmt: skip
        if choices:
            kwargs["type"] = click.Choice(choices)
        elif isinstance(default, bool):
            name = f"{name}/--no-{name[2:]}"
        elif knob.name.endswith("_rate") or knob.name == "other_identical_share":
            kwargs["type"] = click.FloatRange(0, 1)
        elif isinstance(default, int) or knob.name == "random_seed":
            kwargs["type"] = int
        else:
            kwargs["type"] = float
        command = click.option(name, knob.name, **kwargs)(command)
    return command


@main.command("sandbox")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8800, show_default=True)
@click.option("--key", default=DEFAULT_KEY, show_default=True, help="The API key it accepts.")
@click.option("--secret", default=DEFAULT_SECRET, help="The API secret it accepts.")
@click.option(
    "--seed",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSON file of venues, users, contacts, companies, leads, opportunities, tasks.",
)
@_knob_options
@user_errors
def sandbox_command(
    host: str, port: int, key: str, secret: str, seed: Path | None, **knobs: Any
) -> None:
    """Serve a local iVvy-compatible API (for rehearsals and tests), harder than iVvy where the
    reference is silent: each fault is an option below.

    \b
    Example:
      task-import sandbox --port 8800 --rate-limit 100 --latency-ms 50
      IVVY_BASE_URL=http://127.0.0.1:8800 IVVY_API_KEY=sandbox-key \\
        IVVY_API_SECRET=sandbox-secret task-import run tasks.csv
    """
    extra: dict[str, Any] = {}
    if seed:
        try:
            extra["seed"] = load_seed(seed)
        except SeedError as exc:
            raise UsageError(str(exc)) from None
    config = SandboxConfig(key=key, secret=secret, **knobs, **extra)
    shown_secret = secret if secret == DEFAULT_SECRET else "<the --secret you chose>"
    click.echo(
        f"iVvy sandbox on http://{host}:{port} (key {key!r}). Point the importer at it with:\n"
        f"  export IVVY_BASE_URL=http://{host}:{port} IVVY_API_KEY={key} "
        f"IVVY_API_SECRET={shown_secret}",
        err=True,
    )
    serve(config, host=host, port=port)


if __name__ == "__main__":
    main()
