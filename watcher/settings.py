"""Watcher's configuration: defaults, then one TOML file, then ``WATCHER_*`` environment variables.

    load_settings(path, env) -> Settings        (frozen; every model forbids unknown keys)

Environment variables override the file key by key: ``WATCHER_HTTP__TIMEOUT=30s`` sets
``http.timeout``, ``WATCHER_WATCHER__DATA_DIR=/x`` sets ``watcher.data_dir``, and
``WATCHER_SOURCES__0__ENABLED=false`` sets ``sources.0.enabled``. A whole list or table can be
given as JSON (``WATCHER_RSSHUB__INSTANCES='["http://127.0.0.1:1200"]'``).

Every failure (missing file, malformed TOML, unknown key, bad value, broken cross-reference) becomes
one ``ConfigError`` whose key is the dotted path of the setting at fault (``sources.0.interval``).

What this module does not do: it reads no global state on its own (``Settings()`` sees only the
values passed to it; ``load_settings`` chooses the file and the environment), it opens no store and
makes no network request, and it does not check that directories exist.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from datetime import time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from watcher import __version__
from watcher.errors import ConfigError
from watcher.models import RuleField

ENV_PREFIX = "WATCHER_"
CONFIG_ENV = "WATCHER_CONFIG"
DEFAULT_USER_AGENT = f"watcher/{__version__} (feed monitor)"
STORE_FILENAME = "watcher.db"

# --- value types ----------------------------------------------------------------------------------

_DURATION = re.compile(r"(?:\d+(?:\.\d+)?[wdhms])+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([wdhms])")
_UNIT_S = {"w": 604800.0, "d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}


def parse_duration(value: object) -> timedelta:
    """Read "90s", "10m", "3d", "1h30m" or a number of seconds as a timedelta longer than 0."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _duration_seconds(value)
    else:
        raise ValueError("must be a duration such as '90s', '10m', '1h30m' or a number of seconds")
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError("must be a duration longer than zero")
    return timedelta(seconds=seconds)


def _duration_seconds(text: str) -> float:
    compact = text.replace(" ", "").lower()
    if _DURATION.fullmatch(compact):
        return sum(float(n) * _UNIT_S[unit] for n, unit in _DURATION_PART.findall(compact))
    try:
        return float(compact)
    except ValueError:
        msg = f"{text!r} is not a duration such as '90s', '10m', '1h30m' or a number of seconds"
        raise ValueError(msg) from None


def _blank_to_none(value: object) -> object:
    """TOML has no null: an empty string means "not set"."""
    if isinstance(value, str) and not value.strip():
        return None
    return value


def _url_checker(*schemes: str) -> AfterValidator:
    allowed = " or ".join(f"{s}://" for s in schemes)

    def check(value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme.lower() not in schemes or not parts.hostname:
            # the value itself is left out: a proxy URL may carry a password
            raise ValueError(f"must be a URL starting with {allowed}")
        return value

    return AfterValidator(check)


def _default_user_agent(value: object) -> object:
    return DEFAULT_USER_AGENT if _blank_to_none(value) is None else value


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


def _regex(value: str) -> str:
    """A pattern that Python's ``re`` compiles (the dedupe boilerplate rules)."""
    try:
        re.compile(value)
    except re.error as e:
        raise ValueError(f"not a regular expression: {e}") from None
    return value


def _rule_regex(value: str) -> str:
    """A rule's pattern: compiles (case-insensitively) and cannot match an empty text."""
    try:
        compiled = re.compile(value, re.IGNORECASE)
    except re.error as e:
        raise ValueError(f"not a regular expression: {e}") from None
    if compiled.search("") is not None:
        raise ValueError("matches an empty text, so it would match every story")
    return value


def _term(value: str) -> str:
    """A rule's keyword or "quoted phrase": something to look for, never blank."""
    inner = value.strip()
    if len(inner) >= 2 and inner[0] == inner[-1] == '"':
        inner = inner[1:-1]
    if not inner.strip():
        raise ValueError("a term must not be blank")
    return value


_QUIET = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)\s*-\s*([01]?\d|2[0-3]):([0-5]\d)")


def parse_quiet_hours(value: str) -> tuple[time, time]:
    """Read "22:00-07:00" as (start, end) local times; the span may cross midnight."""
    found = _QUIET.fullmatch(value.strip())
    if found is None:
        raise ValueError(f"{value!r} is not a span of local times such as '22:00-07:00'")
    start = time(int(found[1]), int(found[2]))
    end = time(int(found[3]), int(found[4]))
    if start == end:
        raise ValueError("the start and end of quiet hours must differ")
    return start, end


def _quiet_hours(value: str) -> str:
    parse_quiet_hours(value)
    return value.strip()


def _time_zone(value: str) -> str:
    """An IANA time zone name such as "Asia/Shanghai" (or "UTC")."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not a time zone such as 'UTC' or 'Asia/Shanghai'") from None
    return value


def parse_listen(value: str) -> tuple[str, int]:
    """Read "127.0.0.1:8787" or "[::1]:8787" as (host, port); port 0 lets the system choose."""
    host, sep, port = value.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not (port.isascii() and port.isdigit()) or int(port) > 65535:
        raise ValueError(f"{value!r} is not host:port such as '127.0.0.1:8787'")
    return host, int(port)


def _listen(value: str) -> str:
    parse_listen(value)
    return value.strip()


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
OptionalDuration = Annotated[Duration | None, BeforeValidator(_blank_to_none)]
HttpUrl = Annotated[str, _url_checker("http", "https")]
OptionalHttpUrl = Annotated[HttpUrl | None, BeforeValidator(_blank_to_none)]
ProxyUrl = Annotated[str, _url_checker("http", "https", "socks5", "socks5h")]
OptionalProxyUrl = Annotated[ProxyUrl | None, BeforeValidator(_blank_to_none)]
OptionalStr = Annotated[str | None, BeforeValidator(_blank_to_none)]
OptionalSecret = Annotated[SecretStr | None, BeforeValidator(_blank_to_none)]
Name = Annotated[str, Field(pattern=r"^[\w.-]+$")]  # letters (any script), digits, _ . -
SourceFormat = Literal["hexo", "link", "jekyll"]
LogLevel = Annotated[
    Literal["debug", "info", "warning", "error", "critical"], BeforeValidator(_lower)
]
LogFormat = Literal["auto", "json", "console"]
WebhookPreset = Literal[
    "generic", "slack", "discord", "feishu", "dingtalk", "wecom", "telegram", "ntfy"
]
SIGNED_PRESETS = ("generic", "feishu", "dingtalk")  # the presets whose payloads use `secret`
Interrupted = Literal["resend", "hold"]
"""What the outbox does with an alert whose send a crash cut off (sent or not, nobody knows)."""
Term = Annotated[str, AfterValidator(_term)]
RulePattern = Annotated[str, AfterValidator(_rule_regex)]
QuietHours = Annotated[str, AfterValidator(_quiet_hours)]
OptionalQuietHours = Annotated[QuietHours | None, BeforeValidator(_blank_to_none)]
TimeZoneName = Annotated[str, AfterValidator(_time_zone)]
ListenAddress = Annotated[str, AfterValidator(_listen)]
OptionalListen = Annotated[ListenAddress | None, BeforeValidator(_blank_to_none)]


def _invalid(key: str, message: str) -> PydanticCustomError:
    """A validation error for ``key``, relative to the model that raises it."""
    return PydanticCustomError("invalid_setting", message, {"key": key})


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --- sections -------------------------------------------------------------------------------------


class WatcherSettings(_Frozen):
    """The ``[watcher]`` table: where data lives and how the daemon logs."""

    data_dir: Path = Path("data")
    archive_dir: Path = Path("archive")
    database: OptionalStr = None
    log_level: LogLevel = "info"
    log_format: LogFormat = "auto"
    parse_workers: int = Field(default=0, ge=0, le=64)

    @model_validator(mode="after")
    def _database_is_url(self) -> WatcherSettings:
        if self.database is not None and "://" not in self.database:
            raise _invalid("database", "must be a store URL such as sqlite:///path/watcher.db")
        return self


class HttpSettings(_Frozen):
    """The ``[http]`` table: limits and identity for every fetch."""

    timeout: Duration = timedelta(seconds=20)
    max_concurrency: int = Field(default=16, ge=1, le=1000)
    per_host_concurrency: int = Field(default=2, ge=1)
    user_agent: Annotated[str, BeforeValidator(_default_user_agent)] = DEFAULT_USER_AGENT
    max_response_bytes: int = Field(default=10 * 1024 * 1024, ge=1)
    max_redirects: int = Field(default=5, ge=0, le=30)
    proxy: OptionalProxyUrl = None

    @model_validator(mode="after")
    def _per_host_within_total(self) -> HttpSettings:
        if self.per_host_concurrency > self.max_concurrency:
            raise _invalid("per_host_concurrency", "must not exceed max_concurrency")
        return self


class RsshubSettings(_Frozen):
    """The ``[rsshub]`` table: instances a route source is fetched from, tried in order."""

    instances: tuple[HttpUrl, ...] = ()
    failure_cooldown: Duration = timedelta(minutes=10)


class DedupSettings(_Frozen):
    """The ``[dedup]`` table: how far back and how alike two articles must be to be one story."""

    window: Duration = timedelta(days=3)
    threshold: float = Field(default=0.5, gt=0.0, le=1.0)
    containment: float = Field(default=0.5, gt=0.0, le=1.0)
    containment_min_shingles: int = Field(default=30, ge=1)
    number_check_min: int = Field(default=4, ge=1)
    number_agreement: float = Field(default=0.7, ge=0.0, le=1.0)
    boilerplate: tuple[Annotated[str, AfterValidator(_regex)], ...] = ()
    archive_first_only: bool = False


class ServerSettings(_Frozen):
    """The ``[server]`` table: the daemon's HTTP endpoint (health, metrics, story feeds)."""

    listen: OptionalListen = None
    feed_limit: int = Field(default=50, ge=1, le=1000)

    @property
    def address(self) -> tuple[str, int] | None:
        """``listen`` as (host, port), or None when the server is off."""
        return None if self.listen is None else parse_listen(self.listen)


class OutboxSettings(_Frozen):
    """The ``[outbox]`` table: how failed alert deliveries are retried, and for how long."""

    retry_min: Duration = timedelta(seconds=30)
    retry_max: Duration = timedelta(hours=1)
    give_up_after: Duration = timedelta(days=3)

    @model_validator(mode="after")
    def _ordered(self) -> OutboxSettings:
        if self.retry_max < self.retry_min:
            raise _invalid("retry_max", "must be at least retry_min")
        return self


class SourceSettings(_Frozen):
    """One ``[[sources]]`` entry: a feed URL or an RSSHub route, and how to archive its articles."""

    name: Name
    url: OptionalHttpUrl = None
    route: OptionalStr = None
    via: OptionalHttpUrl = None
    proxy: OptionalProxyUrl = None
    outlet: str = Field(min_length=1)
    categories: tuple[str, ...] = ()
    format: SourceFormat = "hexo"
    image_proxy: OptionalHttpUrl = None
    interval: Duration = timedelta(minutes=10)
    timeout: OptionalDuration = None
    headers: dict[str, str] = Field(default_factory=dict)
    enabled: bool = True

    @model_validator(mode="after")
    def _one_target(self) -> SourceSettings:
        if (self.url is None) == (self.route is None):
            raise _invalid("url", "give exactly one of url or route")
        if self.route is not None and not self.route.startswith("/"):
            raise _invalid("route", "must start with '/', like /guancha/headline")
        return self


class RuleSettings(_Frozen):
    """One ``[[rules]]`` entry: terms a story must match, where and in which stories; channels.

    How the terms combine is written in ``watcher.rules``.
    """

    name: Name
    any: tuple[Term, ...] = ()
    all: tuple[Term, ...] = ()
    exclude: tuple[Term, ...] = ()
    regex: tuple[RulePattern, ...] = ()
    fields: tuple[RuleField, ...] = Field(default=("title", "text"), min_length=1)
    sources: tuple[str, ...] = ()
    outlets: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    min_outlets: int = Field(default=1, ge=1)
    channels: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _has_keywords(self) -> RuleSettings:
        if not self.any and not self.all and not self.regex:
            raise _invalid("any", "a rule needs keywords in any or all")
        return self


class _ChannelSettings(_Frozen):
    """What every channel has besides its name: digests, a rate limit, quiet hours."""

    digest: OptionalDuration = None
    rate_limit: int = Field(default=0, ge=0)
    rate_period: Duration = timedelta(hours=1)
    quiet_hours: OptionalQuietHours = None
    timezone: TimeZoneName = "UTC"
    interrupted: Interrupted = "resend"

    @property
    def zone(self) -> ZoneInfo:
        """``timezone`` as a ZoneInfo: quiet hours and the times in alerts are in this zone."""
        return ZoneInfo(self.timezone)

    @property
    def quiet_span(self) -> tuple[time, time] | None:
        """``quiet_hours`` as (start, end) local times, or None."""
        return None if self.quiet_hours is None else parse_quiet_hours(self.quiet_hours)


class EmailChannelSettings(_ChannelSettings):
    """A ``[[channels]]`` entry with ``type = "email"``: alerts sent by SMTP."""

    name: Name
    type: Literal["email"]
    host: str = Field(min_length=1)
    port: int = Field(default=587, ge=1, le=65535)
    username: OptionalStr = None
    password: OptionalSecret = None
    starttls: bool = True
    tls: bool = False
    sender: str = Field(min_length=3, pattern=r"@")
    recipients: tuple[Annotated[str, Field(pattern=r"@")], ...] = Field(min_length=1)
    timeout: Duration = timedelta(seconds=30)

    @model_validator(mode="after")
    def _one_tls_mode(self) -> EmailChannelSettings:
        if self.tls and self.starttls:
            raise _invalid("tls", "set at most one of tls and starttls")
        if self.password is not None and self.username is None:
            raise _invalid("username", "a password needs a username")
        return self


class WebhookChannelSettings(_ChannelSettings):
    """A ``[[channels]]`` entry with ``type = "webhook"``: alerts POSTed as JSON."""

    name: Name
    type: Literal["webhook"]
    url: HttpUrl
    secret: OptionalSecret = None
    preset: WebhookPreset = "generic"
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: Duration = timedelta(seconds=10)
    chat_id: OptionalStr = None
    proxy: OptionalProxyUrl = None

    @model_validator(mode="after")
    def _preset_keys(self) -> WebhookChannelSettings:
        if (self.preset == "telegram") != (self.chat_id is not None):
            raise _invalid("chat_id", "give a chat_id with the telegram preset, and only there")
        if self.secret is not None and self.preset not in SIGNED_PRESETS:
            signed = ", ".join(SIGNED_PRESETS)
            raise _invalid("secret", f"the {self.preset} preset signs nothing (only {signed})")
        return self


ChannelSettings = Annotated[
    EmailChannelSettings | WebhookChannelSettings, Field(discriminator="type")
]
CHANNEL_TYPES = ("email", "webhook")


# --- the whole configuration ----------------------------------------------------------------------


class Settings(BaseSettings):
    """All of watcher's configuration; build it with ``load_settings``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True
    )

    watcher: WatcherSettings = Field(default_factory=WatcherSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    rsshub: RsshubSettings = Field(default_factory=RsshubSettings)
    dedup: DedupSettings = Field(default_factory=DedupSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)
    sources: tuple[SourceSettings, ...] = ()
    rules: tuple[RuleSettings, ...] = ()
    channels: tuple[ChannelSettings, ...] = ()

    _config_file: Path | None = PrivateAttr(default=None)
    _base_dir: Path | None = PrivateAttr(default=None)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only the values passed in: ``load_settings`` chooses the file and the environment."""
        return (init_settings,)

    @model_validator(mode="after")
    def _check_sources(self) -> Settings:
        _check_unique("sources", [s.name for s in self.sources])
        for i, source in enumerate(self.sources):
            if source.route is not None and not self.rsshub.instances:
                raise _invalid(f"sources.{i}.route", "a route needs rsshub.instances")
        return self

    @model_validator(mode="after")
    def _check_rules(self) -> Settings:
        _check_unique("rules", [r.name for r in self.rules])
        known = {c.name for c in self.channels}
        sources = {s.name for s in self.sources}
        for i, rule in enumerate(self.rules):
            for j, channel in enumerate(rule.channels):
                if channel not in known:
                    raise _invalid(f"rules.{i}.channels.{j}", f"no channel named {channel!r}")
            for j, source in enumerate(rule.sources):
                if source not in sources:
                    raise _invalid(f"rules.{i}.sources.{j}", f"no source named {source!r}")
        return self

    @model_validator(mode="after")
    def _check_channels(self) -> Settings:
        _check_unique("channels", [c.name for c in self.channels])
        return self

    @property
    def config_file(self) -> Path | None:
        """The TOML file these settings were read from, if any."""
        return self._config_file

    @property
    def data_path(self) -> Path:
        """``watcher.data_dir`` made absolute: from the config file's folder, else the cwd."""
        return (self._base_dir or Path.cwd()) / self.watcher.data_dir

    @property
    def archive_path(self) -> Path:
        """Folder the dump files are written to: ``watcher.archive_dir`` under ``data_path``."""
        return self.data_path / self.watcher.archive_dir

    @property
    def store_path(self) -> Path:
        """The default SQLite store file, ``data_path / "watcher.db"``."""
        return self.data_path / STORE_FILENAME

    @property
    def store_url(self) -> str:
        """``watcher.database`` when set, else ``sqlite:///`` + the absolute ``store_path``."""
        return self.watcher.database or f"sqlite:///{self.store_path}"

    def source(self, name: str) -> SourceSettings:
        """The source called ``name``; KeyError if there is none."""
        for source in self.sources:
            if source.name == name:
                return source
        raise KeyError(name)


def _check_unique(section: str, names: Sequence[str]) -> None:
    first_at: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in first_at:
            message = f"duplicate name {name!r} (also {section}.{first_at[name]}.name)"
            raise _invalid(f"{section}.{i}.name", message)
        first_at[name] = i


# --- loading --------------------------------------------------------------------------------------


def load_settings(path: str | Path | None, env: Mapping[str, str] | None = None) -> Settings:
    """Read defaults, then the TOML file at ``path``, then ``WATCHER_*`` variables of ``env``.

    ``env`` defaults to ``os.environ``; ``path`` None means ``WATCHER_CONFIG`` from ``env``,
    or defaults only when that is unset too.
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    chosen = path if path is not None else environ.get(CONFIG_ENV) or None
    file = Path(chosen) if chosen is not None else None
    file_data = _read_toml(file) if file is not None else {}
    env_data = _read_env(environ)
    try:
        settings = Settings.model_validate(_merge(file_data, env_data))
    except ValidationError as e:
        raise _config_error(e, file, environ) from e
    if file is not None:
        settings._config_file = file.absolute()
        settings._base_dir = file.absolute().parent
    else:
        settings._base_dir = Path.cwd()
    return settings


def _read_toml(file: Path) -> dict[str, Any]:
    if not file.is_file():
        raise ConfigError("", "no such config file", file=str(file))
    try:
        return TomlConfigSettingsSource(Settings, toml_file=file)()
    except tomllib.TOMLDecodeError as e:
        raise ConfigError("", _toml_message(e), file=str(file)) from e
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError("", f"cannot read the file: {e}", file=str(file)) from e


def _toml_message(error: tomllib.TOMLDecodeError) -> str:
    """``Invalid value (at line 3, column 7)`` -> ``malformed TOML at line 3, column 7: ...``."""
    reason, _, where = str(error).rpartition(" (at ")
    if not reason:
        return f"malformed TOML: {error}"
    return f"malformed TOML at {where.rstrip(')')}: {reason}"


class _MappingEnvSource(EnvSettingsSource):
    """``EnvSettingsSource`` over a given mapping instead of ``os.environ``."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        super().__init__(Settings)
        # case-insensitive, as the settings are: WATCHER_HTTP__TIMEOUT == watcher_http__timeout
        self.env_vars = {
            k.lower(): v for k, v in environ.items() if k.upper().startswith(ENV_PREFIX)
        }


def _read_env(environ: Mapping[str, str]) -> dict[str, Any]:
    try:
        return dict(_mark_index_patches(_MappingEnvSource(environ)()))
    except SettingsError as e:
        field = re.search(r'field "(\w+)"', str(e))
        key = field.group(1) if field else ""
        raise ConfigError(key, f"not valid JSON in the environment ({ENV_PREFIX}*)") from e


def _mark_index_patches(value: Any) -> Any:
    """``WATCHER_SOURCES__0__ENABLED`` arrives as ``{"sources": {"0": {...}}}``: a list patch."""
    if not isinstance(value, dict):
        return value
    marked = {k: _mark_index_patches(v) for k, v in value.items()}
    return _IndexPatch(marked) if marked and all(k.isdigit() for k in marked) else marked


class _IndexPatch(dict[str, Any]):
    """Changes to some items of a list, by index; applied by ``_merge``."""


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ``override`` into ``base``: tables key by key, lists whole or by index patch."""
    merged = dict(base)
    for key, value in override.items():
        current = merged.get(key)
        if isinstance(value, _IndexPatch):
            merged[key] = _patch_list(current if isinstance(current, list) else [], value)
        elif isinstance(value, Mapping) and isinstance(current, Mapping):
            merged[key] = _merge(current, value)
        else:
            merged[key] = value
    return merged


def _patch_list(items: list[Any], patch: Mapping[str, Any]) -> list[Any]:
    patched = list(items)
    for index, change in sorted(patch.items(), key=lambda kv: int(kv[0])):
        i = int(index)
        patched.extend({} for _ in range(i + 1 - len(patched)))
        old = patched[i] if isinstance(patched[i], Mapping) else {}
        patched[i] = _merge(old, change) if isinstance(change, Mapping) else change
    return patched


# --- errors ---------------------------------------------------------------------------------------

_PLAIN_MESSAGES = {
    "extra_forbidden": "unknown key",
    "missing": "required key is missing",
    "union_tag_not_found": f"required key is missing ({' or '.join(CHANNEL_TYPES)})",
}


def _config_error(
    error: ValidationError, file: Path | None, environ: Mapping[str, str]
) -> ConfigError:
    """One ConfigError naming the first bad key; the others are listed in its message."""
    first, *rest = error.errors()
    key = _error_key(first)
    message = _error_message(first)
    variable = _env_variable(environ, key.split("."))
    if variable is not None:
        message += f" (from {variable})"
    if rest:
        message += "; also " + "; ".join(f"{_error_key(e)}: {_error_message(e)}" for e in rest)
    return ConfigError(key, message, file=None if variable or file is None else str(file))


def _error_key(error: ErrorDetails) -> str:
    """The dotted path of a pydantic error, without the discriminator pydantic puts in it."""
    parts = [str(p) for p in error["loc"]]
    if len(parts) >= 3 and parts[0] == "channels" and parts[2] in CHANNEL_TYPES:
        del parts[2]
    if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        parts.append("type")
    extra = error.get("ctx", {}).get("key")
    if isinstance(extra, str):
        parts.append(extra)
    return ".".join(parts)


def _error_message(error: ErrorDetails) -> str:
    if error["type"] in _PLAIN_MESSAGES:
        return _PLAIN_MESSAGES[error["type"]]
    cause = error.get("ctx", {}).get("error")
    return str(cause) if isinstance(cause, ValueError) else error["msg"]


def _env_variable(environ: Mapping[str, str], parts: Sequence[str]) -> str | None:
    """The ``WATCHER_*`` variable that set the value at ``parts`` or a table holding it."""
    names = {name.upper(): name for name in environ}
    for n in range(len(parts), 0, -1):
        candidate = ENV_PREFIX + "__".join(parts[:n]).upper()
        if candidate in names:
            return names[candidate]
    return None
