"""``backlight.toml``: read, overridden from the environment, validated into one frozen object.

Precedence: embedded defaults < the TOML file < ``BACKLIGHT_*`` environment variables, read by
pydantic-settings (``BACKLIGHT_KAFKA__BOOTSTRAP_SERVERS``: the key's path in upper case, ``__``
between levels, list items by index, e.g. ``BACKLIGHT_SOURCES__0__TOPIC``, the next index adding
an item; list values as JSON; see ``config_env``). A ``BACKLIGHT_*`` variable that is not a
config key is ignored with a warning naming it. String values may name environment variables as ``${NAME}``;
that is how secrets such as webhook URLs get in.
Any problem raises ``ConfigError`` naming the key and the reason; the CLI exits 2 on it.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from alerts.calendar import CalendarSettings
from alerts.channels import ChannelSettings
from alerts.digest_schedule import DigestSettings
from alerts.duration import parse_duration
from alerts.errors import AlertConfigError
from alerts.routing import RouteSettings
from alerts.thresholds import RuleSettings
from backlight.config_env import ENVIRON, REFERENCE, EnvSource, origin
from schemas.decode import DEFAULT_MAX_BYTES, DEFAULT_MAX_DEPTH, FieldMapping, SourceSpec
from schemas.errors import BacklightError
from storage import PostgresSession

DEFAULT_PATH = "backlight.toml"
_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_PG = PostgresSession()


class ConfigError(BacklightError):
    """The configuration is unusable; the message names the file, the key and the problem."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(_Model):
    bootstrap_servers: str = "127.0.0.1:9092"
    group_id: str = "backlight"
    client_id: str = "backlight"
    batch_size: int = Field(5000, ge=1, le=100_000)
    session_timeout_ms: int = Field(10_000, ge=6_000, le=300_000)
    """How soon the group hands a dead consumer's partitions to the others."""
    client: Literal["confluent-kafka", "kafka-python"] = "confluent-kafka"
    """The consumer's Kafka client: librdkafka through confluent-kafka (parses records outside
    the GIL), or kafka-python (pure Python; the producers and admin calls always use it)."""
    create_topics: bool = True
    """Create missing source and dead-letter topics at start (fine locally; off where ops own topics)."""
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None

    @model_validator(mode="after")
    def _sasl_complete(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL_"):
            for key in ("sasl_mechanism", "sasl_username", "sasl_password"):
                if getattr(self, key) is None:
                    raise ValueError(f"{key} is required when security_protocol is "
                                     f"{self.security_protocol}")
        return self

    def client_options(self) -> dict[str, Any]:
        """Security settings as kafka-python options (the only place the password is read)."""
        options: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.security_protocol.startswith("SASL_"):
            assert self.sasl_password is not None
            options.update(sasl_mechanism=self.sasl_mechanism,
                           sasl_plain_username=self.sasl_username,
                           sasl_plain_password=self.sasl_password.get_secret_value())
        for key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            if getattr(self, key) is not None:
                options[key] = getattr(self, key)
        return options


class StoreSettings(_Model):
    url: str = "sqlite:///backlight.db"
    # PostgreSQL only (README "Event store"): per-connection limits, so that a writer frozen
    # or cut off while holding the write lock delays the others by seconds (0: no timeout).
    lock_timeout_s: float = Field(_PG.lock_timeout_s, ge=0, le=3600)
    statement_timeout_s: float = Field(_PG.statement_timeout_s, ge=0, le=86_400)
    idle_in_transaction_timeout_s: float = Field(_PG.idle_in_transaction_s, ge=0, le=86_400)
    keepalives_idle_s: int = Field(_PG.keepalives_idle_s, ge=1, le=7200)
    keepalives_interval_s: int = Field(_PG.keepalives_interval_s, ge=1, le=600)
    keepalives_count: int = Field(_PG.keepalives_count, ge=1, le=100)
    tcp_user_timeout_s: float = Field(_PG.tcp_user_timeout_s, ge=0, le=3600)

    def session(self) -> PostgresSession:
        """The limits a PostgreSQL store's connections set."""
        return PostgresSession(self.lock_timeout_s, self.statement_timeout_s,
                               self.idle_in_transaction_timeout_s, self.keepalives_idle_s,
                               self.keepalives_interval_s, self.keepalives_count,
                               self.tcp_user_timeout_s)

    @field_validator("url")
    @classmethod
    def _scheme(cls, url: str) -> str:
        if not url.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError("must start with sqlite:/// or postgresql://")
        return url


class SourceSettings(_Model):
    topic: str
    process: str | None = None
    mapping: FieldMapping = FieldMapping()
    """Where each event field is in the messages (``schemas.decode.FieldMapping``)."""
    max_event_bytes: int = Field(DEFAULT_MAX_BYTES, ge=1024, le=16 * 1024 * 1024)
    max_depth: int = Field(DEFAULT_MAX_DEPTH, ge=2, le=256)
    """Deepest nesting of objects and arrays in a message (the message itself is 1)."""
    max_future_skew: str = "1 day"
    """How far after now an event's time may be (wall-clock duration); later is a dead letter."""

    @field_validator("max_future_skew")
    @classmethod
    def _skew(cls, skew: str) -> str:
        if parse_duration(skew).business:
            raise ValueError("a clock skew is wall-clock time (minutes, hours, days), "
                             "not business time")
        return skew

    @field_validator("topic")
    @classmethod
    def _topic(cls, topic: str) -> str:
        if not _TOPIC.match(topic):
            raise ValueError("a Kafka topic name is 1-249 of letters, digits, '.', '_', '-'")
        if topic.endswith(".dlq"):
            raise ValueError("ends in .dlq, which Backlight uses for dead letters")
        return topic

    def spec(self) -> SourceSpec:
        skew_us = round(parse_duration(self.max_future_skew).wall_seconds * 1_000_000)
        return SourceSpec(self.topic, self.process, self.mapping, self.max_event_bytes, self.max_depth,
                          skew_us)


class ProcessSettings(_Model):
    name: str = Field(min_length=1)
    owner: str | tuple[str, ...] | None = None
    """One accountable person; none, or several, is itself an alert (no_owner)."""
    team: str | None = None
    last_reviewed: date | None = None
    review_interval_months: int = Field(18, ge=1, le=120)
    sla: str | None = None
    """How long a case may take, e.g. "5 business days" or "36 hours"."""
    calendar: CalendarSettings | None = None
    """This process's working calendar (default: [alerts.calendar])."""
    reference_model: str | None = None
    end_activities: tuple[str, ...] = ()
    """Activities that close a case (the live map then forgets the case's events); learned
    from the data by the alert rules when none are named."""
    rules: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Per-process rule thresholds over [alerts.rules], e.g. [processes.rules.bottleneck]."""

    @field_validator("sla")
    @classmethod
    def _sla(cls, sla: str | None) -> str | None:
        if sla is not None:
            parse_duration(sla)
        return sla

    @field_validator("rules")
    @classmethod
    def _rules(cls, rules: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        try:
            RuleSettings().merged(rules)
        except ValidationError as exc:
            err = exc.errors()[0]
            raise ValueError(f"{_key(err['loc'])}: {_reason(err)}") from None
        return rules

    @property
    def owners(self) -> tuple[str, ...]:
        if self.owner is None:
            return ()
        return (self.owner,) if isinstance(self.owner, str) else self.owner


class LiveSettings(_Model):
    idle_horizon_days: float = Field(30.0, gt=0, le=3650)
    """The live map forgets the events of a case idle this long (in event time)."""


def _wall_duration(text: str | None) -> str | None:
    if text is not None and parse_duration(text).business:
        raise AlertConfigError(f"{text!r}: lifecycle timers are wall-clock time "
                               "(hours, days, weeks), not business time")
    return text


class AlertSettings(_Model):
    base_url: str | None = None
    """Where `backlight serve` is reachable; alerts then link to their own page."""
    every: str = "15 minutes"
    """How often `backlight alerts run` evaluates and delivers."""
    pending_for: str | None = None
    """How long a condition must hold before it fires (default: at once)."""
    resolve_after: str = "1 day"
    """How long it must be clear before it resolves (no flapping at a threshold)."""
    repeat_interval: str = "28 days"
    """An unchanged, unacknowledged firing alert is sent again after this: far rarer than the
    rounds, so that a channel is not reminded every week of what it already knows."""
    flap_window: str = "28 days"
    """How far back flap detection counts an alert's state changes."""
    flap_changes: int = Field(2, ge=1)
    """More state changes (fired, resolved) than this within flap_window: the alert is
    flapping, announced once and held firing until it has been clear for flap_window."""
    escalate_after: str | None = None
    """Not acknowledged this long: sent to the routes marked escalation = true."""
    confirm_after: str = "5 business days"
    """A resolved alert clear this long (business time in the process's calendar, or wall
    time) is confirmed: the confirmation goes to its routes and to the escalation routes."""
    recurrence_window: str = "30 days"
    """A condition back within this (wall time) of a resolution reopens the episode as
    recurred, one severity step up; later, a return is a new episode."""
    history: str = "365 days"
    """How much of a process's history a round reads: the cases with an event in this span
    before its latest event (and whatever the rules' own windows reach further back)."""
    time_to_act_window: str = "90 days"
    """Time to act (web pages, ``GET /api/time-to-act``, ``/metrics``) covers the episodes that
    fired in this much wall time before now."""
    calendar: CalendarSettings = CalendarSettings()
    rules: RuleSettings = RuleSettings()
    routes: tuple[RouteSettings, ...] = ()
    digest: DigestSettings = DigestSettings()
    """The weekly digest to each escalation route (alerts/digest_schedule.py)."""

    _durations = field_validator("every", "pending_for", "resolve_after", "repeat_interval",
                                 "escalate_after", "history", "flap_window",
                                 "recurrence_window", "time_to_act_window")(_wall_duration)

    @field_validator("confirm_after")
    @classmethod
    def _confirm_after(cls, text: str) -> str:
        parse_duration(text)  # wall or business time: raises naming what is wrong
        return text

    @field_validator("base_url")
    @classmethod
    def _url(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return url.rstrip("/") if url else url


class TokenSettings(_Model):
    """One API token: a name (who it is, recorded on every action), its secret as a SHA-256
    hex digest (``sha256``) or as the value itself, usually from the environment
    (``token = "${BACKLIGHT_TOKEN_ALICE}"``), and whether it may write."""

    name: str = Field(min_length=1, max_length=100)
    sha256: str | None = None
    token: SecretStr | None = None
    write: bool = False

    @field_validator("sha256")
    @classmethod
    def _digest(cls, digest: str | None) -> str | None:
        if digest is not None and not re.fullmatch(r"[0-9a-f]{64}", digest.lower()):
            raise ValueError("must be the 64 hex digits of the token's SHA-256")
        return digest.lower() if digest else digest

    @model_validator(mode="after")
    def _one_secret(self) -> TokenSettings:
        if (self.sha256 is None) == (self.token is None):
            raise ValueError(f"token {self.name!r}: give exactly one of sha256 or token")
        if self.token is not None and len(self.token.get_secret_value()) < 16:
            raise ValueError(f"token {self.name!r}: at least 16 characters")
        return self


class WebSettings(_Model):
    """``backlight serve``: where it listens and who may read and write."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    read: Literal["open", "token"] = "open"
    """Reading: open to anyone who reaches the server, or only with a token (or proxy user)."""
    tokens: tuple[TokenSettings, ...] = ()
    trusted_header: str | None = None
    """A header naming the signed-in user, set by a reverse proxy doing single sign-on
    (oauth2-proxy: ``X-Forwarded-User``); off by default, honoured only from trusted_proxies."""
    trusted_proxies: tuple[str, ...] = ("127.0.0.1", "::1")
    trusted_header_write: bool = True
    """Users named by the proxy may write (record reviews, acknowledge, silence)."""
    secret: SecretStr | None = None
    """Signs the session cookie and the forms' CSRF tokens; random at each start when unset
    (sign-ins then last until a restart). Set it when several instances serve one address."""
    cache_entries: int = Field(64, ge=1, le=10_000)
    """Process summaries (per time window) kept in memory."""
    login_failures_per_minute: int = Field(10, ge=1, le=10_000)
    """Failed sign-ins a client (its address; behind trusted_proxies, X-Forwarded-For's) may
    make in a minute; beyond that ``/login`` answers 429 with Retry-After."""
    map_renders: int = Field(1, ge=1, le=64)
    """Process maps laid out (Graphviz processes) at once; more requests wait."""
    map_wait_s: float = Field(10.0, ge=0, le=600)
    """How long a map request waits for its turn before a 503 with Retry-After."""
    map_timeout_s: float = Field(60.0, gt=0, le=3600)
    """Longest a map's layout may take; a map that takes longer is answered 422, and not
    tried again until its process gets new events."""

    @field_validator("tokens")
    @classmethod
    def _unique(cls, tokens: tuple[TokenSettings, ...]) -> tuple[TokenSettings, ...]:
        names = [t.name for t in tokens]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"two tokens are named {dupes[0]!r}")
        return tokens

    @model_validator(mode="after")
    def _readable(self) -> WebSettings:
        if self.read == "token" and not self.tokens and self.trusted_header is None:
            raise ValueError("read = 'token' needs at least one token or a trusted_header")
        return self


class BrokerSettings(_Model):
    directory: str = ".backlight/broker"


class Settings(BaseSettings):
    """The whole config: the file's table (given as init values) under ``BACKLIGHT_*``."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid", env_prefix="BACKLIGHT_",
                                      env_nested_delimiter="__", case_sensitive=False)

    kafka: KafkaSettings = KafkaSettings()
    store: StoreSettings = StoreSettings()
    broker: BrokerSettings = BrokerSettings()
    live: LiveSettings = LiveSettings()
    alerts: AlertSettings = AlertSettings()
    web: WebSettings = WebSettings()
    sources: tuple[SourceSettings, ...] = ()
    processes: tuple[ProcessSettings, ...] = ()
    channels: tuple[ChannelSettings, ...] = ()

    @property
    def end_activities(self) -> dict[str, tuple[str, ...]]:
        """The configured end activities of each configured process (what finishes a case
        for the live maps and the read models)."""
        return {p.name: tuple(p.end_activities) for p in self.processes}

    @field_validator("sources")
    @classmethod
    def _unique_topics(cls, sources: tuple[SourceSettings, ...]) -> tuple[SourceSettings, ...]:
        seen: set[str] = set()
        for s in sources:
            if s.topic in seen:
                raise ValueError(f"topic {s.topic!r} is configured twice")
            seen.add(s.topic)
        return sources

    @field_validator("processes")
    @classmethod
    def _unique_names(cls, procs: tuple[ProcessSettings, ...]) -> tuple[ProcessSettings, ...]:
        names = [p.name for p in procs]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"process {dupes[0]!r} is configured twice")
        return procs

    @classmethod
    def settings_customise_sources(
            cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """The environment over the file (no .env file, no secrets directory)."""
        assert isinstance(init_settings, InitSettingsSource)
        return EnvSource(settings_cls, init_settings.init_kwargs), init_settings

    @model_validator(mode="before")
    @classmethod
    def _expand_variables(cls, data: Any) -> Any:
        """``${NAME}`` in a string value, from the file or the environment, is NAME's value
        (in ``load``; plain ``model_validate`` takes values as given, as before)."""
        env = ENVIRON.get()
        return data if env is None else _expand(data, env, "")

    @model_validator(mode="before")
    @classmethod
    def _channel_names(cls, data: Any) -> Any:
        """A channel without a name is named after its type (routes refer to names)."""
        if isinstance(data, dict) and isinstance(data.get("channels"), list):
            data["channels"] = [{**c, "name": c.get("name") or str(c.get("type"))}
                                if isinstance(c, dict) else c for c in data["channels"]]
        return data

    @model_validator(mode="after")
    def _routes_name_channels(self) -> Settings:
        names = [c.name for c in self.channels]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"channels: two channels are named {dupes[0]!r}; give each a "
                             "distinct name")
        for i, r in enumerate(self.alerts.routes):
            for name in r.channels:
                if name not in names:
                    raise ValueError(f"alerts.routes[{i}].channels: no channel named {name!r}"
                                     f" (channels: {', '.join(names) or 'none'})")
        return self

    def specs(self) -> dict[str, SourceSpec]:
        return {s.topic: s.spec() for s in self.sources}

    def topic_for(self, process: str) -> str | None:
        return next((s.topic for s in self.sources if s.process == process), None)


def default_toml() -> str:
    """The embedded defaults: three sources and processes (onboarding, payments, claims)."""
    return resources.files("backlight").joinpath("default.toml").read_text()


def load(path: str | os.PathLike[str] | None = None,
         environ: dict[str, str] | None = None) -> Settings:
    """Load settings. Without ``path``, ``backlight.toml`` if present, else embedded defaults."""
    env = dict(os.environ if environ is None else environ)
    where = str(path) if path is not None else DEFAULT_PATH
    if path is None and not Path(DEFAULT_PATH).exists():
        where, text = "embedded defaults", default_toml()
    else:
        try:
            text = Path(where).read_text()
        except FileNotFoundError:
            raise ConfigError(f"{where}: no such config file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{where}: cannot read it ({exc})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML: {exc}") from None
    reset = ENVIRON.set(env)  # what the sources and ${NAME} read, for this load only
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = _key(err["loc"]) or "(top level)"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        setter = origin(err["loc"], env)
        by = f" (set by environment {setter})" if setter else ""
        raise ConfigError(f"{where}: {key}: {_reason(err)}{more}{by}") from None
    except (ConfigError, ValueError) as exc:  # ${NAME} unset; a variable that cannot be set
        raise ConfigError(f"{where}: {exc}") from None
    finally:
        ENVIRON.reset(reset)
    _no_token_written_out(data, env, where)
    return settings


def _no_token_written_out(data: dict[str, Any], env: dict[str, str], where: str) -> None:
    """Web tokens are kept hashed (``sha256``) or come from the environment: a token written
    out in the file (readable by whoever reads the config) is refused, naming its key."""
    tokens = data.get("web", {}).get("tokens", [])
    for i, entry in enumerate(tokens if isinstance(tokens, list) else []):
        value = entry.get("token") if isinstance(entry, dict) else None
        if (isinstance(value, str) and "${" not in value
                and origin(("web", "tokens", i, "token"), env) is None):
            raise ConfigError(
                f"{where}: web.tokens[{i}].token: written out in the file; give its SHA-256 as "
                'sha256 instead, or name an environment variable (token = "${VARIABLE}")')


def _reason(err: Any) -> str:
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        return "unknown key (a typo?)"
    if err["type"] == "missing":
        return "required, but missing"
    if "input" in err and not isinstance(err["input"], dict | list) and err["type"] != "missing":
        shown = str(err["input"])
        secret = any(w in str(err["loc"]) for w in ("url", "password", "token", "secret"))
        if not secret and len(shown) < 80:
            return f"{msg} (got {shown!r})"
    return msg


def _key(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _expand(value: Any, env: Mapping[str, str], key: str) -> Any:
    """``value`` with ``${NAME}`` replaced; ConfigError (not a validation error: it names the
    key itself, and ``load`` adds the file) when NAME is not set."""
    if isinstance(value, dict):
        return {k: _expand(v, env, f"{key}.{k}" if key else k) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, env, f"{key}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, str) and "${" in value:
        def sub(m: re.Match[str]) -> str:
            if m.group(1) not in env:
                raise ConfigError(f"{key}: environment variable {m.group(1)} is not set")
            return env[m.group(1)]
        return REFERENCE.sub(sub, value)
    return value
