"""Docs kept honest: every command is in the README, and the README's commands are real."""

from __future__ import annotations

import re

from watcher.cli import build_parser

from .conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def _commands() -> list[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return sorted(action.choices)  # type: ignore[arg-type]


def test_every_command_in_readme() -> None:
    """Each `watcher` subcommand is documented in the README's command table."""
    documented = set(re.findall(r"^\| `watcher ([a-z-]+)", README, flags=re.MULTILINE))
    assert set(_commands()) == documented


def test_readme_test_command_is_what_ci_runs() -> None:
    """The README's test command (pytest in the venv) is the one .ci/run ends with."""
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert ".venv/bin/pytest" in README
    assert ".venv/bin/pytest" == ci.strip().splitlines()[-1]


def test_changelog_and_decisions_exist() -> None:
    """CHANGELOG.md keeps an Unreleased section and docs/decisions.md exists."""
    assert "## [Unreleased]" in (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert (ROOT / "docs" / "decisions.md").is_file()
