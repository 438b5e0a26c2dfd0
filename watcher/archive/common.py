"""What the format modules share: a line cursor that knows its line number, and a draft article.

Does not detect formats or touch the file system.
"""

from __future__ import annotations

import hashlib
from typing import Any, NoReturn

from watcher.archive.dates import read_date, write_date
from watcher.errors import ArchiveError
from watcher.models import ArchiveFormat, Article, Layout
from watcher.plaintext import html_to_text


def content_id(text: str) -> str:
    """The stable id of a dump file: a hash of its exact text, so a moved file is the same one."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


class Lines:
    """A cursor over ``text`` from ``start``, line by line, counting 1-based line numbers."""

    def __init__(self, text: str, path: str | None, *, start: int = 0) -> None:
        self.text = text
        self.path = path
        self.pos = start
        self.line_no = text.count("\n", 0, start)  # the number of the line last read

    def peek(self) -> str:
        """The next line without its newline ("" at the end of the text)."""
        end = self.text.find("\n", self.pos)
        return self.text[self.pos : end if end >= 0 else len(self.text)]

    def next(self) -> str:
        """Read the next line; a line without a newline means the header never closed."""
        end = self.text.find("\n", self.pos)
        if end < 0:
            self.line_no += 1
            self.fail("unexpected end of file inside the header")
        line = self.text[self.pos : end]
        self.pos = end + 1
        self.line_no += 1
        return line

    def expect_exact(self, expected: str) -> None:
        """Read a line that must be exactly ``expected``."""
        line = self.next()
        if line != expected:
            self.fail(f"expected {expected!r}, found {line[:60]!r}")

    def key_value(self) -> tuple[str, str]:
        """Read a ``key: value`` line."""
        line = self.next()
        key, sep, value = line.partition(": ")
        if not sep or not key.isidentifier():
            self.fail(f"expected 'key: value', found {line[:60]!r}")
        return key, value

    def expect_key(self, key: str) -> str:
        """Read a ``key: value`` line whose key must be ``key``; return the value."""
        found, value = self.key_value()
        return self.check_key(found, key, value)

    def check_key(self, found: str, key: str, value: str) -> str:
        """Fail unless ``found`` is ``key``; return ``value``."""
        if found != key:
            self.fail(f"expected key {key!r}, found {found!r}")
        return value

    def rest(self) -> str:
        """Everything after the lines read so far."""
        return self.text[self.pos :]

    def fail(self, message: str, *, at_end: bool = False) -> NoReturn:
        """Raise an ArchiveError at the current line (or the last line of the file)."""
        line = self.text.count("\n") + 1 if at_end else max(self.line_no, 1)
        raise ArchiveError(self.path, message, line=line)


class Draft:
    """The fields and layout hints of an article being read, built once complete."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.fields: dict[str, Any] = {}
        self.layout: dict[str, Any] = {}

    def read_date(self, text: str, line: int) -> None:
        """Read a header date; keep the text verbatim when no style writes it back exactly."""
        read = read_date(text)
        if read is None:
            self.fields["published_confidence"] = "missing"
            self.layout["date_text"] = text
            return
        value, style, confidence = read
        self.fields["published_at"] = value
        self.fields["published_confidence"] = confidence
        self.layout["date_style"] = style
        if write_date(value, style) != text:
            self.layout["date_text"] = text

    def build(self, fmt: ArchiveFormat, article_id: str) -> Article:
        """The finished Article, with its plain text taken from the body."""
        body = self.fields.get("body_html", "")
        return Article(
            id=article_id,
            format=fmt,
            text=html_to_text(body),
            layout=Layout(**self.layout),
            **self.fields,
        )
