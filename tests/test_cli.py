"""The watcher command: exit codes and messages of each subcommand, on real files and SQLite."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from watcher import __version__, archive
from watcher.cli import main
from watcher.store import open_store

from .conftest import DATA, ROOT

DUMPS = DATA / "dumps"
N_DUMPS = len(list(DUMPS.rglob("*.md")))
EXAMPLE = ROOT / "config.example.toml"
COMMANDS = ["backfill", "export", "run", "poll", "sources", "check-config"]


@pytest.fixture(autouse=True)
def _isolated(cli_env: None) -> None:
    """Every test: no outside WATCHER_* variable, cwd tmp_path, root logger restored."""


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """Where the test config puts the store; not created by the test."""
    return tmp_path / "data"


@pytest.fixture
def config(tmp_path: Path, data_dir: Path) -> Path:
    """A config file whose data_dir is inside tmp_path."""
    return write_config(
        tmp_path / "watcher.toml", f'[watcher]\ndata_dir = "{data_dir.as_posix()}"\n'
    )


@pytest.fixture
def dumps(tmp_path: Path) -> Path:
    """A writable copy of the fixture dumps, in their archive folder layout."""
    return Path(shutil.copytree(DUMPS, tmp_path / "dumps"))


def write_config(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def summary(out: str) -> str:
    """The backfill summary line without its timing (`` in 0.0s``)."""
    return out.splitlines()[0].rpartition(" in ")[0]


def lines_starting(out: str, prefix: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith(prefix)]


def heads(lines: list[str], like: str) -> list[str]:
    """Each line cut to the length of ``like``: compare a message's start, not its wording."""
    return [line[: len(like)] for line in lines]


def stored_count(data_dir: Path) -> int:
    with open_store(data_dir / "watcher.db") as store:
        return store.count_articles()


def tree(root: Path) -> dict[str, bytes]:
    """Every file below root, by its path relative to root."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


# --- backfill -------------------------------------------------------------------------------------


def test_backfill_imports_then_knows(
    config: Path, dumps: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A first backfill imports every dump; a second imports none and counts them known."""
    first_code = main(["--config", str(config), "backfill", str(dumps)])
    first = capsys.readouterr().out
    second_code = main(["--config", str(config), "backfill", str(dumps)])
    second = capsys.readouterr().out
    expected = [
        (0, f"imported {N_DUMPS}, already known 0, failed 0, skipped 0 (not news dumps)"),
        (0, f"imported 0, already known {N_DUMPS}, failed 0, skipped 0 (not news dumps)"),
    ]
    assert expected == [(first_code, summary(first)), (second_code, summary(second))]
    assert N_DUMPS == stored_count(data_dir)


def test_backfill_broken_file_fails_and_others_import(
    config: Path, dumps: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A broken dump exits 1 and is listed with its path and line; every other file is imported."""
    broken = dumps / "index-format-A" / "broken.md"
    # a Hexo header cut off after the author: the file ends (line 7) inside the header
    broken.write_text("\n---\ntitle: x\ncategories: \n - a\nauthor: a\n", encoding="utf-8")
    code = main(["--config", str(config), "backfill", str(dumps)])
    out = capsys.readouterr().out
    failed = lines_starting(out, "failed: ")
    assert (1, f"imported {N_DUMPS}, already known 0, failed 1, skipped 0 (not news dumps)") == (
        code,
        summary(out),
    )
    expected = f"failed: {broken}:7: "
    assert [expected] == heads(failed, expected)
    assert N_DUMPS == stored_count(data_dir)


def test_backfill_skips_a_readme(
    config: Path, dumps: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A README among the dumps is listed as skipped, not failed, and the run exits 0."""
    readme = dumps / "README.md"
    readme.write_text("# My news archive\n", encoding="utf-8")
    code = main(["--config", str(config), "backfill", str(dumps)])
    out = capsys.readouterr().out
    skipped = lines_starting(out, "skipped: ")
    assert (0, f"imported {N_DUMPS}, already known 0, failed 0, skipped 1 (not news dumps)") == (
        code,
        summary(out),
    )
    expected = f"skipped: {readme}:1: not a news-dump file"
    assert [expected] == heads(skipped, expected)
    assert [] == lines_starting(out, "failed: ")


def test_backfill_missing_folder_exits_2(
    config: Path, tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A folder that does not exist exits 2, is named on stderr, and no store is created."""
    missing = tmp_path / "no-such-dumps"
    code = main(["--config", str(config), "backfill", str(missing)])
    captured = capsys.readouterr()
    assert (2, f"watcher: no such file or folder: {missing}\n", "") == (
        code,
        captured.err,
        captured.out,
    )
    assert not data_dir.exists()


# --- configuration --------------------------------------------------------------------------------


def test_unknown_key_names_the_dotted_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unknown key exits 2 and stderr names its dotted path."""
    config = write_config(tmp_path / "bad.toml", '[watcher]\ndata_dir = "data"\ndta_dir = "x"\n')
    code = main(["--config", str(config), "check-config"])
    expected = (2, f"watcher: config error: {config}: watcher.dta_dir: unknown key\n")
    assert expected == (code, capsys.readouterr().err)


def test_malformed_toml_names_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Malformed TOML exits 2 and stderr names the file and the line."""
    config = write_config(tmp_path / "bad.toml", '[watcher]\ndata_dir = "data\n')
    code = main(["--config", str(config), "check-config"])
    err = capsys.readouterr().err
    prefix = f"watcher: config error: {config}: malformed TOML at line 2, "
    assert (2, prefix) == (code, err[: len(prefix)])


def test_bad_duration_names_http_timeout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A timeout that is not a duration exits 2 and stderr names http.timeout."""
    config = write_config(tmp_path / "bad.toml", '[http]\ntimeout = "soon"\n')
    code = main(["--config", str(config), "check-config"])
    err = capsys.readouterr().err
    prefix = f"watcher: config error: {config}: http.timeout: 'soon' is not a duration"
    assert (2, prefix) == (code, err[: len(prefix)])


def test_missing_config_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A --config file that does not exist exits 2 and is named on stderr."""
    missing = tmp_path / "nowhere.toml"
    code = main(["--config", str(missing), "check-config"])
    expected = (2, f"watcher: config error: {missing}: no such config file\n")
    assert expected == (code, capsys.readouterr().err)


def test_bad_config_stops_backfill_before_the_store(
    tmp_path: Path, dumps: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad config stops backfill with exit 2 before any store is created."""
    data = tmp_path / "data"
    config = write_config(
        tmp_path / "bad.toml", f'[watcher]\ndata_dir = "{data.as_posix()}"\nlog_level = "loud"\n'
    )
    code = main(["--config", str(config), "backfill", str(dumps)])
    captured = capsys.readouterr()
    prefix = f"watcher: config error: {config}: watcher.log_level: "
    assert (2, prefix, "", False) == (
        code,
        captured.err[: len(prefix)],
        captured.out,
        data.exists(),
    )


def test_watcher_config_env_names_the_file(
    monkeypatch: pytest.MonkeyPatch,
    config: Path,
    dumps: Path,
    data_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With no --config, WATCHER_CONFIG names the file, and backfill stores where it says."""
    monkeypatch.setenv("WATCHER_CONFIG", str(config))
    check_code = main(["check-config"])
    check_out = capsys.readouterr().out
    backfill_code = main(["backfill", str(dumps)])
    assert (0, f"config: {config}", 0) == (check_code, check_out.splitlines()[0], backfill_code)
    assert N_DUMPS == stored_count(data_dir)


def test_config_option_beats_watcher_config_env(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    config: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--config is used even when WATCHER_CONFIG names another (broken) file."""
    broken = write_config(tmp_path / "broken.toml", "[watcher\n")
    monkeypatch.setenv("WATCHER_CONFIG", str(broken))
    code = main(["--config", str(config), "check-config"])
    assert (0, f"config: {config}") == (code, capsys.readouterr().out.splitlines()[0])


def test_env_override_moves_the_store(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    config: Path,
    dumps: Path,
    data_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """WATCHER_WATCHER__DATA_DIR overrides the file's data_dir: the store goes there."""
    elsewhere = tmp_path / "elsewhere"
    monkeypatch.setenv("WATCHER_WATCHER__DATA_DIR", str(elsewhere))
    check_code = main(["--config", str(config), "check-config"])
    store_line = capsys.readouterr().out.splitlines()[1]
    backfill_code = main(["--config", str(config), "backfill", str(dumps)])
    assert (0, f"store: sqlite:///{elsewhere / 'watcher.db'}", 0) == (
        check_code,
        store_line,
        backfill_code,
    )
    assert (N_DUMPS, False) == (stored_count(elsewhere), data_dir.exists())


def test_bad_env_value_names_key_and_variable(
    monkeypatch: pytest.MonkeyPatch, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad WATCHER_HTTP__TIMEOUT exits 2 naming http.timeout and the variable."""
    monkeypatch.setenv("WATCHER_HTTP__TIMEOUT", "soon")
    code = main(["--config", str(config), "check-config"])
    err = capsys.readouterr().err
    expected = (
        2,
        "watcher: config error: http.timeout: 'soon' is not a duration",
        "(from WATCHER_HTTP__TIMEOUT)",
    )
    assert expected == (code, err[: len(expected[1])], err.rstrip()[-len(expected[2]) :])


# --- export ---------------------------------------------------------------------------------------


def test_export_reproduces_every_file(
    config: Path, dumps: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """After backfill, export writes every file back byte for byte at its origin path."""
    out = tmp_path / "out"
    assert 0 == main(["--config", str(config), "backfill", str(dumps)])
    capsys.readouterr()
    code = main(["--config", str(config), "export", "--out", str(out)])
    assert (0, f"wrote {N_DUMPS} files to {out}, failed 0\n") == (code, capsys.readouterr().out)
    assert tree(dumps) == tree(out)


def test_export_as_jekyll_reads_back(
    config: Path, dumps: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Export --format jekyll writes files parse() reads as jekyll with the same titles and links.

    A dump with no date at all cannot be a Jekyll post: it is the one failure, named by its id.
    """
    sources = [archive.read_file(p) for p in dumps.rglob("*.md")]
    undated = [a.id for a in sources if a.published_at is None]
    out = tmp_path / "jekyll"
    assert 0 == main(["--config", str(config), "backfill", str(dumps)])
    capsys.readouterr()
    code = main(["--config", str(config), "export", "--format", "jekyll", "--out", str(out)])
    captured = capsys.readouterr()
    written = [archive.read_file(p) for p in sorted(out.rglob("*.md"))]
    n_written = N_DUMPS - len(undated)
    assert (1, f"wrote {n_written} files to {out}, failed {len(undated)}\n") == (
        code,
        captured.out,
    )
    failed_ids = [line.split(": ")[1] for line in lines_starting(captured.err, "failed: ")]
    assert undated == failed_ids
    assert ["jekyll"] * n_written == [a.format for a in written]
    # A Hexo dump has no link; its Jekyll file has an empty `from:`, which reads back as "".
    expected = sorted((a.title, a.link or "") for a in sources if a.published_at is not None)
    assert expected == sorted((a.title, a.link or "") for a in written)


# --- check-config, help, version ------------------------------------------------------------------


def test_check_config_example_is_ok_and_creates_nothing(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """check-config on config.example.toml exits 0, prints ok and creates no database."""
    text = EXAMPLE.read_text(encoding="utf-8")
    line = 'data_dir = "data"'
    assert 1 == text.count(line)
    config = write_config(
        tmp_path / "watcher.toml", text.replace(line, f'data_dir = "{data_dir.as_posix()}"')
    )
    code = main(["--config", str(config), "check-config"])
    out = capsys.readouterr().out.splitlines()
    assert (0, "ok", f"store: sqlite:///{data_dir / 'watcher.db'}") == (code, out[-1], out[1])
    assert (False, []) == (data_dir.exists(), sorted(p.name for p in tmp_path.rglob("*.db")))


@pytest.mark.parametrize("command", [[], *([c] for c in COMMANDS)], ids=["top", *COMMANDS])
def test_help_exits_0(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """--help exits 0 and prints the usage of the top level and of each subcommand."""
    code = main([*command, "--help"])
    usage = capsys.readouterr().out.splitlines()[0].split(" [")[0]
    assert (0, " ".join(["usage: watcher", *command])) == (code, usage)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["frobnicate"], "argument COMMAND: invalid choice: 'frobnicate'"),
        ([], "the following arguments are required: COMMAND"),
    ],
    ids=["unknown", "none"],
)
def test_bad_subcommand_exits_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unknown or missing subcommand exits 2 with argparse's usage error."""
    code = main(argv)
    err = capsys.readouterr().err
    last = err.splitlines()[-1]
    assert (2, f"watcher: error: {message}") == (code, last[: len(f"watcher: error: {message}")])


def _run_module(*flags: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("WATCHER_")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # -OO would leave .opt-2.pyc files in the checkout
    return subprocess.run(
        [sys.executable, *flags, "-m", "watcher", "--version"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )


@pytest.mark.parametrize("flags", [(), ("-OO",)], ids=["plain", "optimized"])
def test_python_m_watcher_version(flags: tuple[str, ...]) -> None:
    """``python -m watcher --version`` prints watcher.__version__, under -OO too (no __doc__)."""
    result = _run_module(*flags)
    assert (0, f"watcher {__version__}\n", "") == (result.returncode, result.stdout, result.stderr)


def test_sources_table(tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`sources` lists each source with its state: never checked, failing, disabled."""
    from datetime import UTC, datetime

    from watcher.models import SourceState

    cfg = write_config(
        tmp_path / "w.toml",
        f'[watcher]\ndata_dir = "{data_dir.as_posix()}"\n'
        '[[sources]]\nname = "a"\nurl = "http://127.0.0.1:9/a.xml"\noutlet = "A"\n'
        '[[sources]]\nname = "b"\nurl = "http://127.0.0.1:9/b.xml"\noutlet = "B"\n'
        '[[sources]]\nname = "c"\nurl = "http://127.0.0.1:9/c.xml"\noutlet = "C"\n'
        "enabled = false\n",
    )
    with open_store(data_dir / "watcher.db") as store:
        when = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)
        failing = SourceState(name="b", last_checked_at=when, consecutive_failures=3)
        store.put_source_state(failing.model_copy(update={"last_error": "HTTP 503"}))
    assert 0 == main(["--config", str(cfg), "sources"])
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert ["SOURCE", "STATUS"] == rows[0][:2]
    assert (["a", "never", "checked"], ["b", "failing", "2026-11-21"], ["c", "disabled"]) == (
        rows[1][:3],
        rows[2][:3],
        rows[3][:2],
    )
    assert ["3", "0", "HTTP", "503"] == rows[2][-4:]


class _Terminal(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_progress_line_on_a_terminal(dumps: Path, config: Path) -> None:
    """On a terminal, backfill redraws one progress line per chunk and ends it with a newline."""
    from watcher.backfill import backfill, find_dump_files
    from watcher.cli import _progress_printer, _story_progress
    from watcher.settings import DedupSettings
    from watcher.stories import StoryAssigner

    terminal = _Terminal()
    with open_store(config.parent / "p.db") as store:
        stories = StoryAssigner(store, DedupSettings())
        backfill(
            store,
            find_dump_files([dumps]),
            progress=_progress_printer(terminal, enabled=True),
            chunk_size=5,
            assign_stories=lambda: stories.assign_pending(_story_progress(terminal, enabled=True)),
        )
    text = terminal.getvalue()
    assert text.startswith(f"\r5/{N_DUMPS} files  imported 5  known 0  failed 0")
    assert f"\r{N_DUMPS}/{N_DUMPS} files  imported {N_DUMPS}" in text
    assert text.endswith(f"\rstories: {N_DUMPS}/{N_DUMPS} articles\n")
    assert 2 == text.count("\n")


def test_sources_flags_a_silent_source(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A source that used to publish daily and has been quiet for a month shows as silent."""
    from datetime import UTC, datetime, timedelta

    from watcher.models import Article, SourceState

    cfg = write_config(
        tmp_path / "w.toml",
        f'[watcher]\ndata_dir = "{data_dir.as_posix()}"\n'
        '[[sources]]\nname = "s"\nurl = "http://127.0.0.1:9/s.xml"\noutlet = "S"\n',
    )
    month_ago = datetime.now(UTC) - timedelta(days=30)
    with open_store(data_dir / "watcher.db") as store:
        store.add_articles(
            Article(
                id=f"a{n}",
                format="link",
                title="t",
                outlet="S",
                source="s",
                published_at=month_ago - timedelta(days=n),
            )
            for n in range(5)
        )
        store.put_source_state(SourceState(name="s", last_status=200))
    assert 0 == main(["--config", str(cfg), "sources"])
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert ["s", "silent", "30d"] == rows[1][:3]
