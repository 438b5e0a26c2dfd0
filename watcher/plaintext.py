"""Visible text of an HTML fragment, for matching and search.

lxml rather than BeautifulSoup: the same text on every seed at 1/12 of the cost
(../shared/LIBRARIES.md). Does not clean or rewrite HTML; that is normalize's work.
"""

from __future__ import annotations

import re

import lxml.etree

from watcher.models import Article

# A space before block boundaries, so "</p><p>" does not glue two sentences into one word.
# Plain str.replace on the source: a fifth of a regex's cost, and far cheaper than visiting
# the tree's nodes from Python. Upper-case tags are rare enough in feeds to be left out.
# clean.clean_html reads the same text off its own tree (clean._mark_blocks): change both
# together (tests/test_clean.py holds them to each other).
_BLOCK_MARKS = ("</p>", "</div>", "<div", "</li>", "</h", "</tr>", "</td>", "<br", "</blockquote>")
_TAG = re.compile(r"<[^>]*>")
_INVISIBLE = ("script", "style", "noscript", "template")
_STRING = lxml.etree.XPath("string()")
_PARSER = lxml.etree.HTMLParser(remove_comments=True, remove_pis=True, no_network=True)


def html_to_text(html: str) -> str:
    """The visible text of ``html`` with whitespace runs folded to one space."""
    if not html.strip():
        return ""
    try:
        root = lxml.etree.fromstring(_space_blocks(html), _PARSER)
    except (lxml.etree.LxmlError, ValueError):  # e.g. an XML declaration naming an encoding
        root = None
    if root is None:  # nothing lxml could read as HTML: drop anything tag-like
        return _fold(_TAG.sub(" ", html))
    lxml.etree.strip_elements(root, *_INVISIBLE, with_tail=False)
    return _fold(str(_STRING(root)))


def article_text(article: Article) -> str:
    """An article's visible text: the one it carries, else its body's (for matching)."""
    return article.text or (html_to_text(article.body_html) if article.body_html else "")


def _space_blocks(html: str) -> str:
    for mark in _BLOCK_MARKS:
        if mark in html:
            html = html.replace(mark, " " + mark)
    return html


def _fold(text: str) -> str:
    # str.split() folds every Unicode space (U+3000 too) at a fraction of a regex's cost.
    return " ".join(text.split())
