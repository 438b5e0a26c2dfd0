"""Shared fixtures: test data paths and the shared corpus beside the checkout."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from watcher.store import Store, open_store

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
CORPUS = Path(os.environ.get("WATCHER_CORPUS", ROOT.parent / "shared" / "corpus"))


def corpus_files() -> list[Path]:
    """Every dump file of the shared corpus; skips the test when the corpus is absent."""
    if not CORPUS.is_dir():
        pytest.skip(f"corpus not found at {CORPUS} (set WATCHER_CORPUS to its folder)")
    return sorted(p for p in CORPUS.rglob("*.md") if p.name != "SOURCES.md")


BACKENDS = ["sqlite"]
"""Store backends the contract tests run over (PostgreSQL will join)."""
Opener = Callable[[], Store]


@pytest.fixture(params=BACKENDS)
def reopen(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    """A function that opens the same store of one backend."""
    if request.param == "sqlite":
        return lambda: open_store(tmp_path / "watcher.db")
    raise NotImplementedError(request.param)


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No WATCHER_* variable from outside; cwd tmp_path; the root logger restored after."""
    for name in list(os.environ):
        if name.upper().startswith("WATCHER_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


# Local HTTP servers (a scripted feed server, a forward proxy) for fetch, pipeline and daemon tests.
from .feedserver import feed_server, feed_servers, forward_proxy  # noqa: E402, F401
