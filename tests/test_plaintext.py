"""html_to_text: the visible text of an HTML fragment."""

from __future__ import annotations

import pytest

from watcher.plaintext import html_to_text


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        ("<p>a<script>x()</script>b</p><p>c</p><br>d", "ab c d"),
        ("a &amp; b<style>p{color:red}</style>", "a & b"),
        ("  \n ", ""),
        ("<!-- only a comment -->", ""),
        ("plain text", "plain text"),
        ("<div>第一段</div><div>第二段</div>", "第一段 第二段"),
        ('<?xml version="1.0" encoding="utf-8"?><p>x</p>', "x"),
        ("<p>tail</p>after<noscript>no</noscript>", "tail after"),
        ("<p>a\u3000b\n\n c</p>", "a b c"),
    ],
)
def test_visible_text(html: str, expected: str) -> None:
    """Scripts, styles and comments vanish; blocks are separated; whitespace is folded."""
    assert expected == html_to_text(html)
