"""The exception tree: every error survives pickling (a parse worker's cross to the daemon)."""

from __future__ import annotations

import pickle

import pytest

from watcher.errors import (
    ArchiveError,
    ConfigError,
    DeliveryError,
    FetchError,
    NotADumpError,
    ParseError,
    StoreError,
    WatcherError,
)

ERRORS = [
    ConfigError("http.timeout", "must be positive", file="watcher.toml"),
    FetchError("news", "HTTP 503", status=503, retry_after_s=120.0),
    ParseError("news", "an HTML page, not a feed"),
    ArchiveError("2020/12/a.md", "no front matter", line=3),
    NotADumpError("README.md", "no dump variant"),
    StoreError("watcher.db: cannot add articles: disk I/O error"),
    DeliveryError("mail", "connection refused"),
]


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
def test_every_error_pickles_with_its_class_message_and_fields(error: WatcherError) -> None:
    """The copy has the same class, message and fields as the original."""
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert (str(copy), copy.args, vars(copy)) == (str(error), error.args, vars(error))
