"""Settings: the example config loads, every bad key is named, the environment overrides."""

from __future__ import annotations

import re
import tomllib
from datetime import timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from watcher.errors import ConfigError
from watcher.settings import (
    DEFAULT_USER_AGENT,
    EmailChannelSettings,
    RuleSettings,
    Settings,
    SourceSettings,
    WebhookChannelSettings,
    load_settings,
    parse_duration,
)

EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"

FEED = """
[[sources]]
name = "feed"
url = "https://feeds.example.org/a.xml"
outlet = "Example"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "watcher.toml"
    path.write_text(text, encoding="utf-8")
    return path


def config_error(path: Path | None, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_settings(path, env or {})
    return info.value


# --- the example ----------------------------------------------------------------------------------


def test_example_config_loads() -> None:
    """config.example.toml loads with no error and has its sources disabled."""
    settings = load_settings(EXAMPLE, {})
    expected = (("guancha-headline", False), ("example-feed", False))
    assert expected == tuple((s.name, s.enabled) for s in settings.sources)


def test_example_config_uses_no_outside_host() -> None:
    """Every URL in the example points at loopback or an example.org host."""
    hosts = set(re.findall(r"[a-z0-9]://([\w.-]+)", EXAMPLE.read_text(encoding="utf-8")))
    assert set() == {h for h in hosts if h != "127.0.0.1" and not h.endswith("example.org")}


def _example_tables() -> list[tuple[type[BaseModel], dict[str, Any]]]:
    raw = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    # Every table section of Settings (a model field, not a list of them), found, not listed:
    # a section added later is checked without touching this test.
    sections: dict[str, type[BaseModel]] = {
        name: field.annotation
        for name, field in Settings.model_fields.items()
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
    }
    assert {"watcher", "http", "rsshub", "dedup"} <= set(sections)
    tables = [(model, raw[name]) for name, model in sections.items()]
    tables.append((SourceSettings, raw["sources"][0]))
    tables.append((RuleSettings, raw["rules"][0]))
    by_type = {c["type"]: c for c in raw["channels"]}
    tables.append((EmailChannelSettings, by_type["email"]))
    tables.append((WebhookChannelSettings, by_type["webhook"]))
    return tables


@pytest.mark.parametrize(("model", "table"), _example_tables())
def test_example_config_lists_every_key(model: type[BaseModel], table: dict[str, Any]) -> None:
    """Every field of every settings model appears in config.example.toml."""
    assert sorted(model.model_fields) == sorted(table)


def test_example_config_comments_every_key() -> None:
    """Every key of every table has a comment, on its line or just above, at least once."""
    table, seen, commented = "", set(), set()
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    for before, line in pairwise(["", *lines]):
        if line.startswith("["):
            table = line.strip("[]")
        elif key := re.match(r"(\w+) = ", line):
            seen.add((table, key[1]))
            if "#" in line or before.startswith("#"):
                commented.add((table, key[1]))
    assert set() == seen - commented


# --- loading --------------------------------------------------------------------------------------


def test_no_path_and_no_watcher_config_gives_defaults() -> None:
    """With no path and no WATCHER_CONFIG, load_settings returns the defaults."""
    assert Settings().model_dump() == load_settings(None, {}).model_dump()


def test_watcher_config_names_the_file(tmp_path: Path) -> None:
    """With no path, WATCHER_CONFIG names the file to read."""
    path = write(tmp_path, FEED)
    settings = load_settings(None, {"WATCHER_CONFIG": str(path)})
    expected = ("feed",)
    assert expected == tuple(s.name for s in settings.sources)


def test_settings_ignore_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings() and load_settings(env={}) do not read os.environ."""
    monkeypatch.setenv("WATCHER_HTTP__TIMEOUT", "99s")
    expected = (timedelta(seconds=20), timedelta(seconds=20))
    assert expected == (Settings().http.timeout, load_settings(None, {}).http.timeout)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    """A config path that does not exist names the file."""
    error = config_error(tmp_path / "nope.toml")
    assert (str(tmp_path / "nope.toml"), "no such config file") == (error.file, error.message)


def test_malformed_toml_names_file_and_line(tmp_path: Path) -> None:
    """A TOML syntax error names the file, the line and the column."""
    path = write(tmp_path, '[http]\ntimeout = "20s"\nmax_concurrency = = 3\n')
    error = config_error(path)
    expected = f"{path}: malformed TOML at line 3, column 19: Invalid value"
    assert expected == str(error)


def test_settings_are_frozen() -> None:
    """Settings and their sections cannot be changed after loading."""
    settings = load_settings(EXAMPLE, {})
    with pytest.raises(ValidationError) as info:
        settings.http.max_concurrency = 3  # type: ignore[misc]
    expected = "frozen_instance"
    assert expected == info.value.errors()[0]["type"]


# --- bad keys and values --------------------------------------------------------------------------

BAD_CONFIGS = {
    "unknown table": ("[htp]\ntimeout = 3\n", "htp", "unknown key"),
    "unknown key": ("[http]\ntimeoutt = 3\n", "http.timeoutt", "unknown key"),
    "unknown source key": (FEED + "intreval = '1m'\n", "sources.0.intreval", "unknown key"),
    "bad duration": (
        FEED + "interval = '10x'\n",
        "sources.0.interval",
        "'10x' is not a duration such as '90s', '10m', '1h30m' or a number of seconds",
    ),
    "zero duration": (
        "[http]\ntimeout = 0\n",
        "http.timeout",
        "must be a duration longer than zero",
    ),
    "low int": (
        "[http]\nmax_concurrency = 0\n",
        "http.max_concurrency",
        "Input should be greater than or equal to 1",
    ),
    "wrong type": (
        "[http]\nmax_concurrency = 'many'\n",
        "http.max_concurrency",
        "Input should be a valid integer, unable to parse string as an integer",
    ),
    "per host above total": (
        "[http]\nmax_concurrency = 2\nper_host_concurrency = 3\n",
        "http.per_host_concurrency",
        "must not exceed max_concurrency",
    ),
    "bad proxy scheme": (
        "[http]\nproxy = 'ftp://u:p@127.0.0.1'\n",
        "http.proxy",
        "must be a URL starting with http:// or https:// or socks5:// or socks5h://",
    ),
    "bad log level": (
        "[watcher]\nlog_level = 'loud'\n",
        "watcher.log_level",
        "Input should be 'debug', 'info', 'warning', 'error' or 'critical'",
    ),
    "database not a URL": (
        "[watcher]\ndatabase = 'watcher.db'\n",
        "watcher.database",
        "must be a store URL such as sqlite:///path/watcher.db",
    ),
    "threshold above one": (
        "[dedup]\nthreshold = 2\n",
        "dedup.threshold",
        "Input should be less than or equal to 1",
    ),
    "bad format": (
        FEED + "format = 'early'\n",
        "sources.0.format",
        "Input should be 'hexo', 'link' or 'jekyll'",
    ),
    "missing name": (
        "[[sources]]\nurl = 'https://a.example.org/'\noutlet = 'A'\n",
        "sources.0.name",
        "required key is missing",
    ),
    "url and route": (
        FEED + "route = '/a'\n[rsshub]\ninstances = ['http://127.0.0.1:1200']\n",
        "sources.0.url",
        "give exactly one of url or route",
    ),
    "neither url nor route": (
        "[[sources]]\nname = 'a'\noutlet = 'A'\n",
        "sources.0.url",
        "give exactly one of url or route",
    ),
    "route without instances": (
        "[[sources]]\nname = 'a'\nroute = '/a/b'\noutlet = 'A'\n",
        "sources.0.route",
        "a route needs rsshub.instances",
    ),
    "duplicate source": (
        FEED + FEED,
        "sources.1.name",
        "duplicate name 'feed' (also sources.0.name)",
    ),
    "rule without keywords": (
        "[[rules]]\nname = 'r'\n",
        "rules.0.any",
        "a rule needs keywords in any or all",
    ),
    "rule names unknown channel": (
        "[[rules]]\nname = 'r'\nany = ['x']\nchannels = ['nowhere']\n",
        "rules.0.channels.0",
        "no channel named 'nowhere'",
    ),
    "unknown channel type": (
        "[[channels]]\nname = 'c'\ntype = 'sms'\n",
        "channels.0.type",
        "Input tag 'sms' found using 'type' does not match any of the expected tags:"
        " 'email', 'webhook'",
    ),
    "channel without type": (
        "[[channels]]\nname = 'c'\n",
        "channels.0.type",
        "required key is missing (email or webhook)",
    ),
    "email without host": (
        "[[channels]]\nname = 'c'\ntype = 'email'\nsender = 'a@b'\nrecipients = ['c@d']\n",
        "channels.0.host",
        "required key is missing",
    ),
    "email port out of range": (
        "[[channels]]\nname = 'c'\ntype = 'email'\nhost = '127.0.0.1'\nport = 70000\n"
        "sender = 'a@b'\nrecipients = ['c@d']\n",
        "channels.0.port",
        "Input should be less than or equal to 65535",
    ),
    "unknown webhook key": (
        "[[channels]]\nname = 'c'\ntype = 'webhook'\nurl = 'http://127.0.0.1/'\ncolor = 1\n",
        "channels.0.color",
        "unknown key",
    ),
    "webhook bad url": (
        "[[channels]]\nname = 'c'\ntype = 'webhook'\nurl = '127.0.0.1/hook'\n",
        "channels.0.url",
        "must be a URL starting with http:// or https://",
    ),
    "duplicate channel": (
        "[[channels]]\nname = 'c'\ntype = 'webhook'\nurl = 'http://127.0.0.1/'\n" * 2,
        "channels.1.name",
        "duplicate name 'c' (also channels.0.name)",
    ),
}


@pytest.mark.parametrize(("text", "key", "message"), BAD_CONFIGS.values(), ids=BAD_CONFIGS)
def test_bad_config_names_the_key(tmp_path: Path, text: str, key: str, message: str) -> None:
    """Each bad key or value raises ConfigError naming the file and the dotted key."""
    path = write(tmp_path, text)
    error = config_error(path)
    assert (str(path), key, message) == (error.file, error.key, error.message)


def test_every_bad_key_is_listed(tmp_path: Path) -> None:
    """With several bad keys, the first is the error's key and the others are in its message."""
    error = config_error(write(tmp_path, "[http]\ntimeout = 'x1'\nmax_concurrency = 0\n"))
    expected = (
        "http.timeout",
        "'x1' is not a duration such as '90s', '10m', '1h30m' or a number of seconds; also "
        "http.max_concurrency: Input should be greater than or equal to 1",
    )
    assert expected == (error.key, error.message)


def test_bad_proxy_message_hides_its_password(tmp_path: Path) -> None:
    """A rejected proxy URL is not echoed, so its password stays out of the error."""
    error = config_error(write(tmp_path, "[http]\nproxy = 'ftp://u:hunter2@127.0.0.1'\n"))
    assert False is ("hunter2" in str(error))


# --- environment ----------------------------------------------------------------------------------


def test_env_overrides_nested_key_and_keeps_the_rest(tmp_path: Path) -> None:
    """WATCHER_HTTP__TIMEOUT overrides http.timeout; other http keys keep the file's values."""
    path = write(tmp_path, "[http]\ntimeout = '20s'\nmax_concurrency = 7\n")
    http = load_settings(path, {"WATCHER_HTTP__TIMEOUT": "30s"}).http
    assert (timedelta(seconds=30), 7) == (http.timeout, http.max_concurrency)


def test_env_overrides_data_dir() -> None:
    """WATCHER_WATCHER__DATA_DIR sets watcher.data_dir and so every path under it."""
    settings = load_settings(None, {"WATCHER_WATCHER__DATA_DIR": "/srv/watcher"})
    expected = (Path("/srv/watcher/watcher.db"), Path("/srv/watcher/archive"))
    assert expected == (settings.store_path, settings.archive_path)


def test_env_names_are_case_insensitive() -> None:
    """watcher_dedup__window works like WATCHER_DEDUP__WINDOW."""
    assert timedelta(hours=5) == load_settings(None, {"watcher_dedup__window": "5h"}).dedup.window


def test_env_sets_a_list_as_json() -> None:
    """A list setting can be given whole as JSON."""
    env = {"WATCHER_RSSHUB__INSTANCES": '["http://127.0.0.1:1200", "http://127.0.0.1:1201"]'}
    expected = ("http://127.0.0.1:1200", "http://127.0.0.1:1201")
    assert expected == load_settings(None, env).rsshub.instances


def test_env_patches_list_items_by_index() -> None:
    """WATCHER_SOURCES__0__ENABLED and WATCHER_CHANNELS__0__PASSWORD change one item's key."""
    env = {
        "WATCHER_SOURCES__0__ENABLED": "true",
        "WATCHER_CHANNELS__0__USERNAME": "ops",
        "WATCHER_CHANNELS__0__PASSWORD": "hunter2",
    }
    settings = load_settings(EXAMPLE, env)
    channel = settings.channels[0]
    assert isinstance(channel, EmailChannelSettings)
    assert channel.password is not None
    expected = (True, False, "ops", "hunter2")
    actual = (
        settings.sources[0].enabled,
        settings.sources[1].enabled,
        channel.username,
        channel.password.get_secret_value(),
    )
    assert expected == actual


def test_bad_env_value_names_key_and_variable(tmp_path: Path) -> None:
    """A bad value from the environment names the key and the variable, not the file."""
    error = config_error(write(tmp_path, FEED), {"WATCHER_SOURCES__0__INTERVAL": "soon"})
    expected = (
        None,
        "sources.0.interval",
        "'soon' is not a duration such as '90s', '10m', '1h30m' or a number of seconds"
        " (from WATCHER_SOURCES__0__INTERVAL)",
    )
    assert expected == (error.file, error.key, error.message)


def test_unknown_env_key_is_an_error() -> None:
    """A misspelt nested variable is an unknown key, not silently ignored."""
    error = config_error(None, {"WATCHER_HTTP__TIMEOUTT": "3s"})
    expected = ("http.timeoutt", "unknown key (from WATCHER_HTTP__TIMEOUTT)")
    assert expected == (error.key, error.message)


def test_bad_env_json_names_the_section() -> None:
    """A table given as malformed JSON names the section."""
    error = config_error(None, {"WATCHER_RSSHUB": "{not json"})
    expected = "rsshub"
    assert expected == error.key


# --- values ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("10m", 600),
        ("3d", 259200),
        ("1h30m", 5400),
        ("1w", 604800),
        (" 1H 30M ", 5400),
        ("0.5s", 0.5),
        ("45", 45),
        (45, 45),
        (2.5, 2.5),
        (timedelta(minutes=2), 120),
    ],
)
def test_durations_parse(text: object, seconds: float) -> None:
    """Durations accept unit strings, combined units and plain seconds."""
    assert timedelta(seconds=seconds) == parse_duration(text)


@pytest.mark.parametrize("text", ["", "10x", "m", "-5", "1h-30m", 0, -1, True, "nan", None])
def test_bad_durations_are_rejected(text: object) -> None:
    """Anything but a positive duration is a ValueError."""
    with pytest.raises(ValueError) as info:
        parse_duration(text)
    assert ValueError is info.type


def test_empty_strings_mean_not_set(tmp_path: Path) -> None:
    """Empty optional strings become None; an empty user_agent becomes the default."""
    text = "[http]\nuser_agent = ''\nproxy = ''\n" + FEED + "via = ''\ntimeout = ''\n"
    settings = load_settings(write(tmp_path, text), {})
    source = settings.sources[0]
    expected = (DEFAULT_USER_AGENT, None, None, None)
    assert expected == (settings.http.user_agent, settings.http.proxy, source.via, source.timeout)


def test_secrets_stay_out_of_repr_and_dumps(tmp_path: Path) -> None:
    """A channel password and a webhook secret never appear in repr, str or a JSON dump."""
    text = (
        "[[channels]]\nname = 'mail'\ntype = 'email'\nhost = '127.0.0.1'\nusername = 'u'\n"
        "password = 'hunter2'\nsender = 'a@example.org'\nrecipients = ['b@example.org']\n"
        "[[channels]]\nname = 'hook'\ntype = 'webhook'\nurl = 'http://127.0.0.1/'\n"
        "secret = 's3cr3t'\n"
    )
    settings = load_settings(write(tmp_path, text), {})
    shown = repr(settings) + str(settings) + settings.model_dump_json()
    expected = (False, False)
    assert expected == ("hunter2" in shown, "s3cr3t" in shown)


# --- paths ----------------------------------------------------------------------------------------


def test_relative_data_dir_is_relative_to_config_folder(tmp_path: Path) -> None:
    """A relative data_dir resolves against the folder holding the config file."""
    path = write(tmp_path, "[watcher]\ndata_dir = 'state'\narchive_dir = 'dumps'\n")
    settings = load_settings(path, {})
    expected = (
        tmp_path / "state",
        tmp_path / "state" / "dumps",
        tmp_path / "state" / "watcher.db",
        f"sqlite:///{tmp_path / 'state' / 'watcher.db'}",
        path,
    )
    actual = (
        settings.data_path,
        settings.archive_path,
        settings.store_path,
        settings.store_url,
        settings.config_file,
    )
    assert expected == actual


def test_relative_data_dir_without_file_uses_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no config file, a relative data_dir resolves against the working directory."""
    monkeypatch.chdir(tmp_path)
    settings = load_settings(None, {})
    expected = (tmp_path / "data", None)
    assert expected == (settings.data_path, settings.config_file)


def test_absolute_archive_dir_and_database_win(tmp_path: Path) -> None:
    """An absolute archive_dir is used as is, and database replaces the default store URL."""
    text = "[watcher]\narchive_dir = '/srv/dumps'\ndatabase = 'sqlite:////srv/w.db'\n"
    settings = load_settings(write(tmp_path, text), {})
    expected = (Path("/srv/dumps"), "sqlite:////srv/w.db")
    assert expected == (settings.archive_path, settings.store_url)


def test_source_looks_up_by_name() -> None:
    """Settings.source returns the named source."""
    expected = "example-feed"
    assert expected == load_settings(EXAMPLE, {}).source("example-feed").name
