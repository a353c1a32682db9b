"""Typed, validated settings, loaded once from defaults, files, environment and flags.

Precedence (highest first): command flags (`--set section.key=value`), environment
(`ORCHESTRATOR_SECTION_KEY`), `--config FILE`, `<workspace>/config/monitor.toml`, defaults.
Every value is validated after merging and a bad one is reported with where it came from,
so an operator knows which file or variable to fix. Secrets (the dashboard token, the webhook,
the database URL's password) are never shown: messages carry `***` in their place.
"""

from __future__ import annotations

import os
import re
import socket
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import BadInput

ENV_PREFIX = "ORCHESTRATOR_"
WORKSPACE_ENV = "ORCHESTRATOR_HOME"
WORKSPACE_CONFIG = Path("config") / "monitor.toml"
STATE_DB = Path(".state") / "orchestration.db"

DEFAULT_BUSY_TIMEOUT_SECONDS = 5.0  # how long a reader waits for an executor's write lock
DEFAULT_STALL_AFTER_SECONDS = 900.0
DEFAULT_RESERVE_BYTES = 1 << 30  # the archive may share a disk with the executor: leave it 1 GiB
DEFAULT_ARCHIVE_PARALLEL = 2  # backfill: runs archived at once (each already copies on several threads)
DEFAULT_AUDIT_BYTES_PER_SECOND = 32 << 20  # the fixity audit reads bags at most this fast: a share of a disk
DEFAULT_OFFLOAD_PARALLEL = 8  # files of one bag sent at once (s3transfer's own default is 10)
DEFAULT_DASHBOARD_PORT = 8765
DEFAULT_ESCALATION_REPEAT_SECONDS = 3600.0
DEFAULT_HEARTBEAT_EVENT_SECONDS = 300.0  # HEARTBEAT events: a low rate, the log is not a metric store
DEFAULT_ROTATE_BYTES = 64 << 20  # logs/*.jsonl are renamed to .1 past this size
DEFAULT_EVENT_QUEUE_SIZE = 10_000  # lines a log file may lag behind before publishers wait
DEFAULT_NATS_SERVER = "nats://127.0.0.1:4222"
DEFAULT_NATS_DUPLICATE_WINDOW_SECONDS = 120.0  # JetStream's own default: a resend within it is stored once
DEFAULT_ALERT_TITLE = "[{{ severity }}] {{ summary }}"  # Jinja2 (sandboxed), over the facts alerts/facts.py lists
DEFAULT_ALERT_BODY = (
    "{{ summary }}\n{% if run_id %}run: {{ run_id }}{% if run_name %} ({{ run_name }}){% endif %}\n{% endif %}"
    "{% if failed_task %}failed task: {{ failed_task.task_id }}{% if failed_task.tool %} ({{ failed_task.tool }})"
    "{% endif %}: {{ failed_task.error_type or '' }} {{ failed_task.error_message or '' }}\n{% endif %}"
    "{% if detail %}{{ detail }}\n{% endif %}event: {{ event_type }} at {{ time }}"
)
DEFAULT_METRICS_PREFIX = (
    "orchestrator_monitor_"  # every metric's name starts with it: no collision on a shared Prometheus
)

HIDDEN = "***"  # what a message shows in place of a secret
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^\s/@:]*:)(?P<password>\S*)@")  # to the last @
_QUERY_PASSWORD = re.compile(r"(?P<head>[?&]password=)[^&\s]*", re.IGNORECASE)
_HOST = re.compile(r"(?:[\w.-]+|\[[0-9A-Fa-f:.]+\])(?::\d+)?")  # what url_origin shows: nothing else


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseSettings(_Section):
    url: str | None = Field(default=None, min_length=1)
    url_file: Path | None = None
    schema_name: str = Field(default="reference", alias="schema", pattern=r"^[a-z][a-z0-9_-]*$")  # a built-in mapping
    schema_file: Path | None = None  # a workspace's own mapping (state/mapping.py reads it)
    busy_timeout_seconds: float = Field(default=DEFAULT_BUSY_TIMEOUT_SECONDS, gt=0, le=600)
    # PostgreSQL: how the daemon learns of changes (detect/change_source.py); SQLite is watched through its file
    change_detection: Literal["auto", "watermark", "poll"] = "auto"

    @model_validator(mode="after")
    def _one_url_source(self) -> DatabaseSettings:
        if self.url is not None and self.url_file is not None:
            raise ValueError("set database.url or database.url_file, not both")
        return self


class CompletionSettings(_Section):
    settle_seconds: float | None = Field(default=None, ge=0)  # None: the schema mapping's default
    stall_after_seconds: float = Field(default=DEFAULT_STALL_AFTER_SECONDS, gt=0)
    debounce_seconds: float = Field(default=0.0, ge=0, le=1)  # 0: detect/job.py's adaptive look
    poll_seconds: float = Field(default=0.5, gt=0, le=60)
    reconcile_seconds: float = Field(default=60.0, gt=0)


class ArchiveSettings(_Section):
    root: Path = Path(".archive")
    quiet_seconds: float = Field(default=1.0, ge=0)
    reserve_bytes: int = Field(default=DEFAULT_RESERVE_BYTES, ge=0)
    parallel: int = Field(default=DEFAULT_ARCHIVE_PARALLEL, ge=1, le=64)


class AuditSettings(_Section):
    enabled: bool = True
    cycle_days: float = Field(default=30.0, gt=0)  # every bag is re-read within this many days
    interval_seconds: float = Field(default=3600.0, ge=0.1)  # one pass, over its share of the bags, this often
    bytes_per_second: int = Field(default=DEFAULT_AUDIT_BYTES_PER_SECOND, ge=0)  # 0: unlimited


class OffloadTarget(_Section):
    """One `[[offload.targets]]`: an S3-compatible bucket (credentials from `credentials_file`, an AWS
    credentials file, else the standard AWS chain) or a directory (an NFS or USB mount)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    kind: Literal["s3", "directory"]
    bucket: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    prefix: str = Field(default="", pattern=r"^([^/\s][^\s]*[^/\s]|[^/\s])?$")  # keys: <prefix>/<run id>/<path>
    path: Path | None = None
    endpoint_url: str | None = Field(default=None, pattern=r"^https?://")  # None: AWS itself
    region: str | None = Field(default=None, pattern=r"^[a-z0-9-]+$")
    credentials_file: Path | None = None
    profile: str | None = Field(default=None, min_length=1)
    object_lock_mode: Literal["GOVERNANCE", "COMPLIANCE"] | None = None
    object_lock_days: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _fits_its_kind(self) -> OffloadTarget:
        if self.kind == "s3" and (self.bucket is None or self.path is not None):
            raise ValueError(f"offload target {self.name!r}: kind 's3' needs a bucket and no path")
        s3_only = (self.bucket, self.endpoint_url, self.credentials_file, self.profile, self.object_lock_mode)
        if self.kind == "directory" and (self.path is None or any(v is not None for v in s3_only) or self.prefix):
            raise ValueError(f"offload target {self.name!r}: kind 'directory' needs a path and no S3 keys")
        if (self.object_lock_mode is None) != (self.object_lock_days is None):
            raise ValueError(f"offload target {self.name!r}: object_lock_mode and object_lock_days go together")
        return self


class OffloadSettings(_Section):
    enabled: bool = False
    interval_seconds: float = Field(default=300.0, ge=0.1)  # a pass sends every bag not yet at each target
    bytes_per_second: int = Field(
        default=0, ge=0
    )  # read from the bags at most this fast, all targets together; 0: no limit
    parallel: int = Field(default=DEFAULT_OFFLOAD_PARALLEL, ge=1, le=64)
    multipart_bytes: int = Field(default=64 << 20, ge=5 << 20)  # a file this big or more goes in parts this big
    targets: list[OffloadTarget] = Field(default_factory=list)

    @model_validator(mode="after")
    def _targets(self) -> OffloadSettings:
        names = [target.name for target in self.targets]
        if len(names) != len(set(names)):
            raise ValueError("two offload.targets have the same name")
        if self.enabled and not self.targets:
            raise ValueError("offload.enabled needs at least one [[offload.targets]]")
        return self


RetentionTarget = Literal["run_dirs", "bags"]
RUN_DIRS: RetentionTarget = "run_dirs"


class RetentionPolicy(_Section):
    """One `[[retention.policies]]`: which archived runs it covers and how many or how long it keeps.

    A run goes only when some policy covers it and every policy covering it lets it go (retention/policy.py)."""

    statuses: list[str] = Field(default_factory=list)  # the run's status; empty: any
    run_name: str = Field(default="*", min_length=1)  # a glob over the run's name (its id when it has none)
    keep_days: float | None = Field(default=None, ge=0)  # kept while it ended less than this many days ago
    keep_last: int | None = Field(default=None, ge=0)  # the newest N per run name and status are kept
    applies_to: list[RetentionTarget] = Field(default_factory=lambda: [RUN_DIRS], min_length=1)

    @model_validator(mode="after")
    def _keeps_something(self) -> RetentionPolicy:
        if self.keep_days is None and self.keep_last is None:
            raise ValueError("a retention policy needs keep_days, keep_last or both")
        return self


class RetentionSettings(_Section):
    enabled: bool = False  # off: nothing is ever deleted (`retention plan` still shows what would go)
    interval_seconds: float = Field(default=3600.0, ge=0.1)
    policies: list[RetentionPolicy] = Field(default_factory=list)


class DashboardSettings(_Section):
    enabled: bool = True
    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=DEFAULT_DASHBOARD_PORT, ge=1, le=65535)
    token: str | None = Field(default=None, min_length=16)


class EscalationSettings(_Section):
    repeat_seconds: float = Field(default=DEFAULT_ESCALATION_REPEAT_SECONDS, gt=0)
    command: str | None = Field(default=None, min_length=1)
    webhook: str | None = Field(default=None, pattern=r"^https?://")
    timeout_seconds: float = Field(default=10.0, gt=0, le=60)


class HealthSettings(_Section):
    heartbeat_seconds: float = Field(default=10.0, ge=0.1, le=300)
    heartbeat_event_seconds: float = Field(default=DEFAULT_HEARTBEAT_EVENT_SECONDS, ge=1)
    stale_after_seconds: float = Field(default=30.0, gt=0)
    db_check_seconds: float = Field(default=30.0, ge=0.1)
    storage_check_seconds: float = Field(default=60.0, ge=0.1)
    quick_check_seconds: float = Field(default=2.0, gt=0, le=60)
    min_free_percent: float = Field(default=5.0, ge=0, lt=100)


class EventsSettings(_Section):
    rotate_bytes: int = Field(default=DEFAULT_ROTATE_BYTES, ge=4096)
    keep_files: int = Field(default=5, ge=1, le=1000)
    fsync: Literal["never", "interval", "batch"] = "interval"
    fsync_interval_seconds: float = Field(default=1.0, gt=0)
    queue_size: int = Field(default=DEFAULT_EVENT_QUEUE_SIZE, ge=1)
    subscriber_queue_size: int = Field(default=1000, ge=1)
    sinks: list[str] = Field(default_factory=lambda: ["console"])

    @field_validator("sinks", mode="before")
    @classmethod
    def _split_names(cls, value: object) -> object:
        """The environment and --set give one string: `console,nats`."""
        if isinstance(value, str):
            return [name.strip() for name in value.split(",") if name.strip()]
        return value


class ClusterSettings(_Section):
    """Several daemons on one PostgreSQL: who this one is, and how long a silent one keeps its runs."""

    daemon_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")  # None: the host name
    lease_seconds: float = Field(default=30.0, ge=2, le=3600)


class NatsSettings(_Section):
    """The `nats` event sink (`events.sinks = ["nats"]`): where it publishes and how hard it tries."""

    servers: list[str] = Field(default_factory=lambda: [DEFAULT_NATS_SERVER], min_length=1)
    stream: str = Field(default="ORCHESTRATOR", pattern=r"^[A-Za-z0-9_-]+$")  # created when missing
    subject_prefix: str = Field(default="orchestrator", pattern=r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
    token_file: Path | None = None  # a file holding the token (the token itself never sits in the configuration)
    credentials_file: Path | None = None  # a NATS `.creds` file (JWT and NKey seed)
    connect_timeout_seconds: float = Field(default=2.0, gt=0, le=60)
    ack_timeout_seconds: float = Field(default=2.0, gt=0, le=60)
    retries: int = Field(default=2, ge=0, le=10)  # more tries per event before NATS counts as out
    duplicate_window_seconds: float = Field(default=DEFAULT_NATS_DUPLICATE_WINDOW_SECONDS, gt=0)

    @field_validator("servers", mode="before")
    @classmethod
    def _split_servers(cls, value: object) -> object:
        """The environment and --set give one string: `nats://a:4222,nats://b:4222`."""
        if isinstance(value, str):
            return [url.strip() for url in value.split(",") if url.strip()]
        return value

    @field_validator("servers")
    @classmethod
    def _nats_urls(cls, value: list[str]) -> list[str]:
        for url in value:
            if not re.match(r"^(nats|tls|ws|wss)://[^\s/]+$", url):
                raise ValueError(f"{hide_passwords(url)!r} is not a NATS server URL (nats://host:port)")
        return value

    @model_validator(mode="after")
    def _one_credential(self) -> NatsSettings:
        if self.token_file is not None and self.credentials_file is not None:
            raise ValueError("set nats.token_file or nats.credentials_file, not both")
        return self


def _split_words(value: object) -> object:
    """The environment and --set give one string: `json://a/hook mailto://b`, as apprise reads it too."""
    return value.split() if isinstance(value, str) else value


class AlertRule(_Section):
    """One `[[alerts.rules]]`: what it matches (every list empty = any), what it says, how often."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    events: list[str] = Field(default_factory=lambda: ["RUN_COMPLETED"], min_length=1)
    statuses: list[str] = Field(default_factory=list)  # the run's status (RUN_COMPLETED, RUN_STATUS_CHANGED's `to`)
    tools: list[str] = Field(default_factory=list)  # a failed task's tool
    error_types: list[str] = Field(default_factory=list)  # a failed task's error type
    run_name: str = Field(default="*", min_length=1)  # a glob over the run's name (its id when it has none)
    safe_modes: list[str] = Field(default_factory=list)  # SAFE_MODE_ENTERED/EXITED's reason
    severities: list[str] = Field(default_factory=list)  # ESCALATION's severity
    urls: list[str] = Field(default_factory=list)  # apprise URLs; empty: alerts.urls
    title: str = DEFAULT_ALERT_TITLE
    body: str = DEFAULT_ALERT_BODY
    throttle_seconds: float = Field(default=300.0, gt=0)
    throttle_count: int = Field(default=10, ge=1)  # alerts per throttle window; the rest make one summary
    dedup_seconds: float = Field(default=86400.0, gt=0)  # one alert per run (or event) per rule within this

    @field_validator("urls", mode="before")
    @classmethod
    def _split_urls(cls, value: object) -> object:
        return _split_words(value)


class AlertsSettings(_Section):
    urls: list[str] = Field(default_factory=list)
    rules: list[AlertRule] = Field(default_factory=list)
    queue_size: int = Field(default=10_000, ge=1)  # alerts waiting for delivery at most; past it, dropped and counted
    max_attempts: int = Field(default=8, ge=1)  # then undeliverable until the next start
    retry_seconds: float = Field(default=1.0, gt=0)  # the first retry's wait, doubled per attempt
    max_retry_seconds: float = Field(default=60.0, gt=0)

    @field_validator("urls", mode="before")
    @classmethod
    def _split_urls(cls, value: object) -> object:
        return _split_words(value)

    @model_validator(mode="after")
    def _rules_are_deliverable(self) -> AlertsSettings:
        names = [rule.name for rule in self.rules]
        if len(names) != len(set(names)):
            raise ValueError("two alerts.rules have the same name")
        if not self.urls and any(not rule.urls for rule in self.rules):
            raise ValueError("a rule without urls needs alerts.urls")
        return self


class OpenLineageSettings(_Section):
    enabled: bool = False
    transport: Literal["http", "file"] = "http"
    url: str | None = Field(default=None, pattern=r"^https?://")  # http: the endpoint's base (Marquez: port 5000)
    endpoint: str = "api/v1/lineage"
    api_key: str | None = Field(default=None, min_length=1)  # sent as a bearer token
    file: Path = Path("logs/openlineage.jsonl")  # file: one event per line, appended
    namespace: str = Field(default="orchestrator", min_length=1)
    job_name: str | None = Field(default=None, min_length=1)  # None: the run's name, else its id
    timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    max_attempts: int = Field(default=8, ge=1)  # then undeliverable until the next start
    retry_seconds: float = Field(default=1.0, gt=0)  # the first retry's wait, doubled per attempt
    max_retry_seconds: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _http_needs_a_url(self) -> OpenLineageSettings:
        if self.enabled and self.transport == "http" and self.url is None:
            raise ValueError("openlineage.transport 'http' needs openlineage.url")
        return self


class MetricsSettings(_Section):
    prefix: str = Field(default=DEFAULT_METRICS_PREFIX, pattern=r"^([a-zA-Z_:][a-zA-Z0-9_:]*)?$")


class Settings(_Section):
    """Everything configurable, frozen; built by `load_settings` and passed down explicitly."""

    workspace: Path
    database: DatabaseSettings = DatabaseSettings()
    completion: CompletionSettings = CompletionSettings()
    archive: ArchiveSettings = ArchiveSettings()
    audit: AuditSettings = AuditSettings()
    offload: OffloadSettings = OffloadSettings()
    retention: RetentionSettings = RetentionSettings()
    dashboard: DashboardSettings = DashboardSettings()
    escalation: EscalationSettings = EscalationSettings()
    health: HealthSettings = HealthSettings()
    events: EventsSettings = EventsSettings()
    cluster: ClusterSettings = ClusterSettings()
    nats: NatsSettings = NatsSettings()
    metrics: MetricsSettings = MetricsSettings()
    alerts: AlertsSettings = AlertsSettings()
    openlineage: OpenLineageSettings = OpenLineageSettings()

    def resolve(self, path: Path) -> Path:
        """A configured path, relative ones taken from the workspace."""
        return path if path.is_absolute() else self.workspace / path

    def database_url(self) -> str:
        """The configured SQLAlchemy URL: `database.url`, `database.url_file`, or the workspace's SQLite file."""
        if self.database.url is not None:
            return self.database.url
        if self.database.url_file is not None:
            path = self.resolve(self.database.url_file)
            try:
                url = path.read_text(encoding="utf-8").strip()
            except OSError as err:
                raise BadInput(f"database.url_file {path}: {err.strerror}") from None
            if not url:
                raise BadInput(f"database.url_file {path} is empty")
            return url
        return f"sqlite:///{self.resolve(STATE_DB)}"

    def daemon_id(self) -> str:
        """This daemon's name among several: `cluster.daemon_id`, else the host name (made a valid id)."""
        if self.cluster.daemon_id is not None:
            return self.cluster.daemon_id
        return re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:63].lstrip("._-") or "daemon"


SECTIONS: dict[str, type[_Section]] = {
    name: field.annotation  # type: ignore[misc]
    for name, field in Settings.model_fields.items()
    if name != "workspace"
}

Layer = dict[str, dict[str, Any]]
Origins = dict[tuple[str, str], str]
SECRET_KEYS = frozenset(
    {
        ("dashboard", "token"),
        ("escalation", "webhook"),
        ("database", "url"),
        ("alerts", "urls"),
        ("alerts", "rules"),
        ("openlineage", "api_key"),
        ("openlineage", "url"),
        ("nats", "servers"),
        ("offload", "targets"),  # an endpoint_url may hold a password
    }
)


def hide_passwords(text: str) -> str:
    """`text` with the password of every URL in it hidden, as SQLAlchemy's `hide_password` shows it."""
    return _QUERY_PASSWORD.sub(rf"\g<head>{HIDDEN}", _URL_PASSWORD.sub(rf"\g<head>{HIDDEN}@", text))


def url_origin(url: str) -> str:
    """`scheme://host[:port]` of a URL whose path or query is itself a credential (a webhook's token)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return HIDDEN
    host = parts.netloc.rpartition("@")[2]
    if not parts.scheme or not _HOST.fullmatch(host):
        return HIDDEN
    return f"{parts.scheme}://{host}" + (f"/{HIDDEN}" if parts.path.strip("/") or parts.query or parts.fragment else "")


def hide_value(section: str, key: str, value: str) -> str:
    """A configuration value as a message may show it: a secret's hidden, a URL's password too."""
    if (section, key) in (("dashboard", "token"), ("openlineage", "api_key")):
        return HIDDEN
    if (section, key) in (("escalation", "webhook"), ("alerts", "urls"), ("openlineage", "url")):
        return url_origin(value)
    if (section, key) == ("database", "url") and "://" not in value:
        return HIDDEN  # not a URL: no telling where in it the password is
    return hide_passwords(value)


def hide_secrets(text: str, settings: Settings, *, database_url: str | None = None) -> str:
    """`text` (an error message) without the configured secrets: the token, the webhook, the database URL
    (`database_url`: as read from `database.url_file`) and any password in a URL."""
    configured = (
        ("dashboard", "token", settings.dashboard.token),
        ("escalation", "webhook", settings.escalation.webhook),
        ("database", "url", settings.database.url),
        ("database", "url", database_url),
        *(("alerts", "urls", url) for url in alert_urls(settings.alerts)),
        ("openlineage", "api_key", settings.openlineage.api_key),
        ("openlineage", "url", settings.openlineage.url),
    )
    hidden = {secret: hide_value(section, key, secret) for section, key, secret in configured if secret}
    for url in (settings.database.url, database_url):
        found = _URL_PASSWORD.search(url or "")
        tail = found["password"].partition("@")[2] if found else ""
        if tail:  # an unquoted @ in the password: a driver takes what follows it for the host, and quotes it
            hidden[f"{tail}@"] = f"{HIDDEN}@"
    for secret in sorted(hidden, key=len, reverse=True):
        text = text.replace(secret, hidden[secret])
    return hide_passwords(text)


def alert_urls(alerts: AlertsSettings) -> list[str]:
    """Every apprise URL configured (each may hold a password or a token)."""
    return [*alerts.urls, *(url for rule in alerts.rules for url in rule.urls)]


def choose_workspace(flag: str | None, environ: Mapping[str, str]) -> Path:
    """`--workspace`, else `ORCHESTRATOR_HOME`, else the current directory; made absolute."""
    chosen = flag or environ.get(WORKSPACE_ENV) or os.getcwd()
    return Path(chosen).expanduser().absolute()


def load_settings(
    workspace: Path,
    *,
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> Settings:
    """Merge every source by precedence and validate; `BadInput` names the bad key and its source."""
    environ = os.environ if environ is None else environ
    merged: Layer = {}
    origins: Origins = {}
    workspace_file = workspace / WORKSPACE_CONFIG
    if workspace_file.is_file():
        _merge(merged, origins, _read_toml(workspace_file), f"file {workspace_file}")
    if config_file is not None:
        if not config_file.is_file():
            raise BadInput(f"configuration file not found: {config_file}")
        _merge(merged, origins, _read_toml(config_file), f"file {config_file}")
    _merge(merged, origins, _from_environment(environ), None)
    _merge(merged, origins, _from_overrides(overrides), "--set")
    try:
        return Settings.model_validate({"workspace": workspace, **merged})
    except ValidationError as exc:
        raise BadInput(_describe(exc, merged, origins)) from None


def _read_toml(path: Path) -> Layer:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise BadInput(f"cannot read configuration file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise BadInput(f"configuration file {path} is not valid TOML: {exc}") from None
    for section, values in data.items():
        if not isinstance(values, dict):
            raise BadInput(f"configuration file {path}: '{section}' must be a [section] table")
    return data


def _from_environment(environ: Mapping[str, str]) -> Layer:
    """`ORCHESTRATOR_<SECTION>_<KEY>` for known sections; other `ORCHESTRATOR_*` names are not ours.

    An empty value means unset, so a systemd drop-in can clear a key with `Environment=NAME=`.
    """
    layer: Layer = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name == WORKSPACE_ENV or value == "":
            continue
        section, _, key = name[len(ENV_PREFIX) :].lower().partition("_")
        if section in SECTIONS:
            layer.setdefault(section, {})[key] = (value, f"environment variable {name}")
    return layer


def _from_overrides(overrides: list[str] | tuple[str, ...]) -> Layer:
    layer: Layer = {}
    for item in overrides:
        dotted, sep, value = item.partition("=")
        section, dot, key = dotted.strip().partition(".")
        if not sep or not dot or not key:
            shown = f"{dotted}={HIDDEN}" if value else item  # the key is wrong; the value may be a secret
            raise BadInput(f"--set {shown!r}: expected section.key=value")
        layer.setdefault(section, {})[key] = value
    return layer


def _merge(merged: Layer, origins: Origins, layer: Layer, source: str | None) -> None:
    for section, values in layer.items():
        for key, value in values.items():
            origin = source
            if source is None:  # environment values carry their own variable name
                value, origin = value
            merged.setdefault(section, {})[key] = value
            origins[(section, key)] = origin or "?"


def _describe(exc: ValidationError, merged: Layer, origins: Origins) -> str:
    problems = []
    for error in exc.errors():
        loc = tuple(str(part) for part in error["loc"])
        dotted = ".".join(loc)
        if error["type"] == "extra_forbidden":
            what = "unknown section" if len(loc) == 1 else "unknown key"
            origin = origins.get((loc[0], loc[1])) if len(loc) > 1 else _section_origin(loc[0], origins)
            problems.append(f"{what} '{dotted}' (from {origin})")
            continue
        if len(loc) >= 2 and (loc[0], loc[1]) in origins:
            value = merged[loc[0]][loc[1]]
            if isinstance(value, str):
                shown = repr(hide_value(loc[0], loc[1], value))
            else:
                shown = repr(HIDDEN) if (loc[0], loc[1]) in SECRET_KEYS else repr(value)
            problems.append(f"{dotted} = {shown} (from {origins[(loc[0], loc[1])]}): {error['msg']}")
        else:
            problems.append(f"{dotted}: {error['msg']}")
    return "bad configuration: " + "; ".join(problems)


def _section_origin(section: str, origins: Origins) -> str:
    return next((origin for (sec, _), origin in origins.items() if sec == section), "?")
