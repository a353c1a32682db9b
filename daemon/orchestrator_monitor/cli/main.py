"""The `orchestrator` command: parse, load settings once, call, print, exit with the spec's code.

Errors reach the user as one line on stderr (`MonitorError` carries the exit code); an
unexpected exception is reported the same way, with its traceback only under `--debug`.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console

from .. import __version__
from ..config import Settings, choose_workspace, hide_passwords, hide_secrets, load_settings
from ..errors import BadInput, MonitorError, Unavailable
from ..service.signals import stop_on_signals
from ..state.access import mapping_text, survey
from ..state.records import RUN_STATUSES
from ..state.setup import init_workspace, refuse_sqlite_triggers, trigger_sql
from ..timefmt import utc_now
from ..views.reader import read_run, read_status, state_reader
from ..views.runs import RUN_ORDERS, select_runs
from .render import print_run, print_status, print_warnings, status_screen, write_json, write_plain

# The daemon, archival, live views and the demo are imported by their own handlers: they pull in
# uvicorn, APScheduler, Jinja2 and watchdog, which `status` and `monitor` (run by scripts, often
# in loops) should not pay for at every start (bench/views.py).

Handler = Callable[[argparse.Namespace, Settings, Console, Console], int]


def cmd_init(args: argparse.Namespace, settings: Settings, out: Console, err: Console) -> int:
    triggers = args.triggers or args.drop_triggers
    if args.print and not triggers:
        raise BadInput("--print goes with --triggers or --drop-triggers")
    if args.print:
        out.print(trigger_sql(settings, drop=args.drop_triggers, apply=False).sql, markup=False, end="")
        return 0
    if triggers:
        refuse_sqlite_triggers(settings.database_url())  # before init creates anything
    result = init_workspace(settings)
    state = "created" if result.created_database else "ready"
    out.print(
        f"workspace {result.workspace} ready; state database {result.database} {state} (schema {result.schema})",
        markup=False,
    )
    if triggers:
        done = trigger_sql(settings, drop=args.drop_triggers, apply=True)
        what = "removed from" if args.drop_triggers else f"installed in (channel {done.channel})"
        out.print(f"change-notification triggers {what} schema {done.schema}", markup=False)
    return 0


def cmd_schema(args: argparse.Namespace, settings: Settings, out: Console, err: Console) -> int:
    """Which mappings fit the configured database, and the configured one as TOML; exit 1 when it does not fit."""
    found = survey(settings)
    configured = found.configured.name
    if args.json:
        document = {
            "database": found.database,
            "configured": configured,
            "mappings": {
                name: {"fits": not problems, "missing": problems} for name, problems in found.problems.items()
            },
            "index_advice": list(found.index_advice),
        }
        out.print_json(data=document)
        return 1 if found.problems[configured] else 0
    out.print(f"# state database {found.database}", markup=False)
    for name, problems in found.problems.items():
        verdict = "fits" if not problems else "does not fit: " + "; ".join(problems)
        mark = "  (configured)" if name == configured else ""
        out.print(f"# {name:<10} {verdict}{mark}", markup=False)
    for statement in found.index_advice:
        out.print(f"# missing index, for the executor's owner to create: {statement}", markup=False)
    source = settings.database.schema_file
    origin = f"database.schema_file {settings.resolve(source)}" if source else f"built-in mapping {configured}"
    out.print(f"# the configured mapping ({origin}):\n", markup=False)
    out.print(mapping_text(settings), markup=False, end="")
    return 1 if found.problems[configured] else 0


def cmd_status(args: argparse.Namespace, settings: Settings, out: Console, err: Console) -> int:
    if args.follow:
        from .live import follow_status

        order = args.sort or "attention"
        return _until_signal(lambda stop: follow_status(settings, out, stop, args.status, order, args.limit))
    with state_reader(settings) as state:
        view = select_runs(read_status(state, utc_now()), args.status, args.sort or "oldest", args.limit)
    if args.json:
        write_json(view, sys.stdout)
    else:
        print_status(view, out)
        print_daemons(settings, out)
    print_warnings(view.warnings, err)
    return 0


def print_daemons(settings: Settings, out: Console) -> None:
    """Below `status` on a shared PostgreSQL: the daemons sharing the work, and which are alive."""
    from ..views.health import read_daemons

    shown = [
        f"{d.daemon_id} {'live' if d.live else 'lease lost'} ({d.host}, beat {d.beat_age_s:.0f} s ago)"
        for d in read_daemons(settings)
    ]
    if shown:
        write_plain(out, "daemons: " + ", ".join(shown))


def cmd_monitor(args: argparse.Namespace, settings: Settings, out: Console, err: Console) -> int:
    if args.follow:
        from .live import follow_run

        return _until_signal(lambda stop: follow_run(settings, args.run, out, stop))
    with state_reader(settings) as state:
        detail = read_run(state, args.run, utc_now(), settings.workspace)
    if args.json:
        write_json(detail, sys.stdout)
    else:
        print_run(detail, out)
    print_warnings(detail.warnings, err)
    return 0


def cmd_console(args: argparse.Namespace, settings: Settings, out: Console, err: Console) -> int:
    """The full-screen console (the `console` extra: Textual)."""
    try:
        from .console import run_console
    except ImportError as exc:
        raise Unavailable(f"the console needs Textual: pip install 'orchestrator-monitor[console]' ({exc})") from None
    with state_reader(settings) as state:
        return run_console(settings, state)


def _until_signal(follow: Callable[[threading.Event], int]) -> int:
    """A live view until it ends by itself or SIGINT/SIGTERM (a clean stop, exit 0)."""
    stop = threading.Event()
    with stop_on_signals(stop):
        return follow(stop)


def cmd_demo(args: argparse.Namespace, settings: Settings, out: Console, err: Console) -> int:
    from ..demo.run import run_demo

    out.print(f"demo workspace: {settings.workspace} (Ctrl-C stops)", markup=False)
    stop = threading.Event()
    with stop_on_signals(stop):
        run_demo(
            settings,
            runs=args.runs,
            tick_seconds=args.tick,
            seed=args.seed,
            console=out,
            screen=status_screen,
            stop=stop,
            stay_seconds=args.stay,
        )
    return 0


def cmd_daemon(args: argparse.Namespace, settings: Settings, out: Console, err: Console) -> int:
    """Run the monitor in the foreground until SIGTERM or SIGINT (what systemd starts); SIGHUP reloads."""
    from ..service.daemon import run_daemon
    from ..service.notify import Notifier, watchdog_interval_seconds
    from ..web.front import web_front

    front = web_front(settings)  # a dashboard open to the network without a token is refused before anything starts
    stop, reload = threading.Event(), threading.Event()
    notifier = Notifier.from_environment(os.environ)
    with stop_on_signals(stop, reload):
        run_daemon(
            settings,
            stop,
            notifier=notifier,
            watchdog_seconds=watchdog_interval_seconds(os.environ, os.getpid()),
            reload_requested=reload,
            load_settings=lambda: load_settings(settings.workspace, config_file=args.config, overrides=args.set),
            front=front,
        )
    return 0


def cmd_health(args: argparse.Namespace, settings: Settings, out: Console, err: Console) -> int:
    """Run the checks once and read the daemon's heartbeat: exit 0 healthy, 1 not."""
    from ..views.health import collect_health

    report = collect_health(settings, utc_now())
    if args.json:
        write_json(report, sys.stdout)
    else:
        for name, check in sorted(report["checks"].items()):
            write_plain(out, f"{name}\t{check['status']}\t{check['detail']}")
        extras = [f"safe mode: {', '.join(report['safe_modes'])}"] if report["safe_modes"] else []
        extras += [f"escalated: {', '.join(report['escalations'])}"] if report["escalations"] else []
        alerts = report["alerts"]
        if alerts["pending"]:
            extras.append(f"alerts waiting: {alerts['pending']} ({alerts['undeliverable']} undeliverable)")
        lineage = report["lineage"]
        if lineage["pending"]:
            extras.append(f"lineage events waiting: {lineage['pending']} ({lineage['undeliverable']} undeliverable)")
        for daemon in report["daemons"]:  # several daemons on one PostgreSQL: which are alive
            state = "live" if daemon["live"] else "lease lost"
            write_plain(
                out,
                f"daemon {daemon['daemon_id']}\t{state}\t{daemon['host']} pid {daemon['pid']}, "
                f"beat {daemon['beat_age_s']:.0f} s ago",
            )
        write_plain(out, "; ".join(["healthy" if report["healthy"] else "unhealthy", *extras]))
    return 0 if report["healthy"] else 1


def cmd_events(args: argparse.Namespace, settings: Settings, out: Console, err: Console) -> int:
    from ..events.log import show_events

    return show_events(
        settings,
        sys.stdout,
        run_id=args.run,
        types=args.type,
        since=args.since,
        follow=args.follow,
        as_json=args.json,
    )


def cmd_archive(args: argparse.Namespace, settings: Settings, out: Console, err: Console) -> int:
    from .archive import archive_command

    return archive_command(settings, args.run, out, err)


def cmd_verify(args: argparse.Namespace, settings: Settings, out: Console, err: Console) -> int:
    from .archive import verify_command, verify_path_command

    if args.path is not None:
        if args.remote:
            raise BadInput("verify: --remote goes with --run ID, not --path")
        return verify_path_command(args.path, out, err)
    if args.remote:
        from .archive import verify_remote_command

        return verify_remote_command(settings, args.run, out, err)
    return verify_command(settings, args.run, out, err)


def cmd_report(args: argparse.Namespace, settings: Settings, out: Console, err: Console) -> int:
    from .archive import report_command

    return report_command(settings, args.run, out, err)


def cmd_alerts(args: argparse.Namespace, settings: Settings, out: Console, err: Console) -> int:
    from .alerts import alerts_test_command

    return alerts_test_command(settings, args.rule, out)


def cmd_archives(args: argparse.Namespace, settings: Settings, out: Console, err: Console) -> int:
    from .archives import archive_filter, archives_command

    where = archive_filter(
        args.status, args.since, args.until, args.name, args.tool, args.error_type, args.result, utc_now()
    )
    fmt = "json" if args.json else "tsv" if args.tsv else "table"
    return archives_command(settings, args.action, args.run, where, fmt, args.limit, out)


def cmd_retention(args: argparse.Namespace, settings: Settings, out: Console, err: Console) -> int:
    from .retention import retention_command

    return retention_command(settings, args.action, args.json, out)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


def _run_statuses(text: str) -> list[str]:
    """`FAILED` or `FAILED,PARTIAL` (any case): run statuses to show."""
    statuses = [part.strip().upper() for part in text.split(",") if part.strip()]
    unknown = [status for status in statuses if status not in RUN_STATUSES]
    if unknown or not statuses:
        raise argparse.ArgumentTypeError(f"expected run statuses from {', '.join(RUN_STATUSES)}, got {text!r}")
    return statuses


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--workspace", metavar="DIR", help="workspace directory (default: $ORCHESTRATOR_HOME, else .)")
    common.add_argument("--config", metavar="FILE", type=Path, help="configuration file (TOML)")
    common.add_argument(
        "--set", metavar="SECTION.KEY=VALUE", action="append", default=[], help="override one configuration key"
    )
    common.add_argument("--debug", action="store_true", help="show the traceback of an internal error")

    parser = argparse.ArgumentParser(
        prog="orchestrator", description="Monitor, complete and archive orchestrator runs."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=[common], help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        return sub

    init = add("init", cmd_init, "create a workspace and its schema (idempotent)")
    init_triggers = init.add_mutually_exclusive_group()
    init_triggers.add_argument(
        "--triggers", action="store_true", help="PostgreSQL: install the change-notification triggers (idempotent)"
    )
    init_triggers.add_argument("--drop-triggers", action="store_true", help="PostgreSQL: remove those triggers")
    init.add_argument("--print", action="store_true", help="print the triggers' DDL (for a DBA) instead of running it")
    add(
        "schema", cmd_schema, "which schema mappings fit the state database, and the configured one as TOML"
    ).add_argument("--json", action="store_true", help="print JSON (without the TOML)")
    status = add("status", cmd_status, "all runs, one line each")
    status_output = status.add_mutually_exclusive_group()
    status_output.add_argument("--json", action="store_true", help="print JSON")
    status_output.add_argument(
        "--follow", action="store_true", help="live, redrawn on events, fitted to the screen (Ctrl-C stops)"
    )
    status.add_argument(
        "--status", metavar="S[,S]", type=_run_statuses, action="extend", help="only runs in these statuses (repeat)"
    )
    status.add_argument("--limit", metavar="N", type=_positive_int, help="at most N runs")
    status.add_argument(
        "--sort",
        choices=RUN_ORDERS,
        help="attention: failed and partial, then running, newest first (default with --follow); "
        "newest; oldest (default)",
    )
    monitor = add("monitor", cmd_monitor, "one run: workstreams, tasks, tool health, error counts")
    monitor.add_argument("--run", required=True, metavar="ID", help="the run id")
    monitor_output = monitor.add_mutually_exclusive_group()
    monitor_output.add_argument("--json", action="store_true", help="print JSON")
    monitor_output.add_argument(
        "--follow", action="store_true", help="live until the run is archived and reported (Ctrl-C stops)"
    )
    add("console", cmd_console, "full-screen terminal console: runs, failures, health, live (q quits)")
    add("daemon", cmd_daemon, "run the monitor in the foreground (what systemd starts)")
    health = add(
        "health", cmd_health, "run the checks once and read the running daemon's heartbeat (exit 1: unhealthy)"
    )
    health.add_argument("--json", action="store_true", help="print JSON")
    events = add("events", cmd_events, "replay and follow the event log (rotated files included)")
    events.add_argument("--run", metavar="ID", help="only this run's events (kept whole until it is archived)")
    events.add_argument(
        "--type", metavar="T", action="append", help="only these types (repeat, or T1,T2; 'log' for log records)"
    )
    events.add_argument("--since", metavar="SEQ|TIME", help="from this seq, time (RFC 3339) or age (15m, 2h, 1d) on")
    events.add_argument("--follow", action="store_true", help="keep printing new lines, across rotation (Ctrl-C stops)")
    events.add_argument("--json", action="store_true", help="print the JSON lines as written")
    archive = add("archive", cmd_archive, "archive a terminal run now (idempotent), or every one not yet archived")
    which = archive.add_mutually_exclusive_group(required=True)
    which.add_argument("--run", metavar="ID", help="the run id")
    which.add_argument("--backfill", action="store_true", help="every terminal run without an archive")
    verify = add("verify", cmd_verify, "check an archive's fixity (exit 1 naming each bad file)")
    verify_which = verify.add_mutually_exclusive_group(required=True)
    verify_which.add_argument("--run", metavar="ID", help="the run id")
    verify_which.add_argument("--path", metavar="DIR", type=Path, help="any BagIt bag on disk (RFC 8493)")
    verify.add_argument("--remote", action="store_true", help="with --run: its offloaded copies at every target")
    add("report", cmd_report, "write the run's reports").add_argument(
        "--run", required=True, metavar="ID", help="the run id"
    )
    archives = add("archives", cmd_archives, "the archive catalog: list, show RUN, search, or reindex from the bags")
    archives.add_argument("action", choices=["list", "show", "search", "reindex"], help="what to do")
    archives.add_argument("run", metavar="RUN", nargs="?", help="show: the run id")
    archives.add_argument(
        "--status", metavar="S[,S]", type=_run_statuses, action="extend", help="only bags of runs in these statuses"
    )
    archives.add_argument("--since", metavar="TIME|AGE", help="runs that ended at or after this time (or age: 7d)")
    archives.add_argument("--until", metavar="TIME|AGE", help="runs that ended before this time (or age)")
    archives.add_argument("--name", metavar="GLOB", help="runs whose name matches this glob (* and ?)")
    archives.add_argument("--tool", metavar="TOOL", help="runs with a task of this tool")
    archives.add_argument("--error-type", metavar="TYPE", help="runs with a task that failed with this error type")
    archives.add_argument("--result", choices=["ok", "corrupt", "unverified"], help="by the last fixity audit's result")
    archives.add_argument("--limit", metavar="N", type=_positive_int, help="at most N bags")
    archives_output = archives.add_mutually_exclusive_group()
    archives_output.add_argument("--json", action="store_true", help="print JSON")
    archives_output.add_argument("--tsv", action="store_true", help="print tab-separated values with a header")
    retention = add("retention", cmd_retention, "what the retention policies delete: plan (a dry run), or run one pass")
    retention.add_argument("action", choices=["plan", "run"], help="plan: show what would go and why; run: delete")
    retention.add_argument("--json", action="store_true", help="print JSON")
    alerts = add("alerts", cmd_alerts, "alert rules: `alerts test RULE` sends the rule a sample alert now")
    alerts.add_argument("action", choices=["test"], help="test: send a sample alert to the rule's destinations")
    alerts.add_argument("rule", metavar="RULE", help="the rule's name (alerts.rules)")
    demo = add("demo", cmd_demo, "a workspace with a simulated executor, to see everything move")
    demo.add_argument("--runs", type=_positive_int, default=6, help="how many runs to simulate (default 6)")
    demo.add_argument("--tick", type=_non_negative_float, default=0.5, help="seconds between executor steps")
    demo.add_argument("--seed", type=int, default=None, help="random seed, for a repeatable demo")
    demo.add_argument(
        "--stay",
        metavar="SECONDS",
        nargs="?",
        type=_non_negative_float,
        const=math.inf,
        default=0.0,
        help="keep the monitor and dashboard up once the runs are done: until Ctrl-C, or for SECONDS",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    out = Console(soft_wrap=True)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    debug = False
    settings: Settings | None = None
    try:
        args = build_parser().parse_args(argv)
        debug = args.debug
        workspace = choose_workspace(args.workspace, os.environ)
        settings = load_settings(workspace, config_file=args.config, overrides=args.set)
        return int(args.handler(args, settings, out, err))
    except MonitorError as exc:
        err.print(f"orchestrator: error: {_without_secrets(str(exc), settings)}", markup=False)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `orchestrator status | head`: the reader left, which is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:
        if debug:
            sys.stderr.write(_without_secrets(traceback.format_exc(), settings))
        message = _without_secrets(str(exc), settings)
        err.print(f"orchestrator: internal error: {type(exc).__name__}: {message} (rerun with --debug)", markup=False)
        return 1


def _without_secrets(text: str, settings: Settings | None) -> str:
    """An error as the terminal and the journal get it: no configured secret, no password of any URL.

    A driver or a library may quote what it was given (an unparsable database URL, say), so
    the line is cleaned here, whatever raised it.
    """
    if settings is None:  # the configuration itself was refused, and its message hides its values
        return hide_passwords(text)
    try:
        url = settings.database_url()
    except MonitorError:  # an unreadable database.url_file: nothing of it can be in the message
        url = None
    return hide_secrets(text, settings, database_url=url)
