"""Visible text of an HTML fragment, for matching and search.

lxml rather than BeautifulSoup: the same text on every seed at 1/12 of the cost
(../shared/LIBRARIES.md). Does not clean or rewrite HTML; that is normalize's work.
"""

from __future__ import annotations

import re

import lxml.etree
import lxml.html

_SPACE = re.compile(r"\s+")
_INVISIBLE = ("script", "style", "noscript", "template")


def html_to_text(html: str) -> str:
    """The visible text of ``html`` with whitespace runs folded to one space."""
    if not html.strip():
        return ""
    try:
        root = lxml.html.fragment_fromstring(html, create_parent="div")
    except (lxml.etree.ParserError, ValueError):
        return _SPACE.sub(" ", html).strip()
    for node in list(root.iter(*_INVISIBLE)):
        node.drop_tree()
    # Block ends read as spaces, so "</p><p>" does not glue two sentences into one word.
    for node in root.iter("br", "p", "div", "li", "h1", "h2", "h3", "h4", "tr"):
        node.tail = " " + (node.tail or "")
    return _SPACE.sub(" ", root.text_content()).strip()
