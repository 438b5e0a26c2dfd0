"""One parsed feed entry -> one Article, the way the archives write their newest posts.

    identity   guid, else link, else title + published time (+ body when both are missing)
    id         BLAKE2b of source name + identity, 32 hex digits: the same item seen again gets
               the same id, so a changed item updates its article instead of adding one
    published  the entry's published time, else its updated time, else ``now`` marked "missing"
    body       content (content:encoded, Atom content), else summary, through clean.clean_html:
               safe, URLs absolute, images behind the source's image proxy. Relative URLs
               resolve against the entry's link, else the channel's link, else the feed URL
               (as Miniflux does): the feed URL of an RSSHub route or a via-proxy is the
               instance's or the proxy's, not the site the HTML came from. (xml:base documents
               are resolved by parse already.)
    text       the visible text of the cleaned body, as plaintext.html_to_text reads it (clean
               reads it off the tree it cleaned, not by parsing the cleaned HTML again)
    head image the first image of the cleaned body, else the entry's own image (enclosure,
               media:thumbnail), proxied the same way: what the RSSHub Hexo generator put in
               ``headimg`` and ``thumbnail``
    title      entities decoded, whitespace folded, control characters dropped
    archive    outlet, categories (the outlet when none), format from the source; the
               format's default Layout; author left out (every archive writes the outlet there)

What it does not do: decide whether the article is new or changed (the store does, by id),
write files, fetch images, or look at other entries.
"""

from __future__ import annotations

import hashlib
import html
import re
from datetime import datetime
from urllib.parse import urlsplit, urlunsplit

from watcher.clean import TAG_LIKE, clean_html, proxy_image, safe_url
from watcher.models import ArchiveFormat, Article, Layout, ParsedEntry, ParsedFeed
from watcher.plaintext import html_to_text
from watcher.settings import SourceSettings

__all__ = ["entry_identity", "normalize_entry"]

# The date style each archive's generator writes (Layout's own default is the Hexo one).
_LAYOUTS: dict[ArchiveFormat, Layout] = {
    "hexo": Layout(),
    "link": Layout(date_style="epoch"),
    "jekyll": Layout(date_style="iso_ms"),
    "early": Layout(date_style="rfc822"),
}
# C0 controls (tab, newline, carriage return are whitespace and get folded) and lone surrogates,
# which no archive file, YAML header or SQLite text can hold.
_UNWRITABLE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
# A Jekyll header writes tags unquoted in a YAML flow list, "tags: [ a, b ]": no YAML indicator.
_TAG_UNSAFE = re.compile(r"""[,\[\]{}:#&*!|>'"%@`]""")


def normalize_entry(
    entry: ParsedEntry, feed: ParsedFeed, source: SourceSettings, *, now: datetime
) -> Article:
    """The Article for one entry of ``feed`` from ``source``; ``now`` is the fetch time (aware).

    An entry with no usable date gets ``published_at = now`` and ``published_confidence =
    "missing"``: "missing" is the literal that says the feed gave no date (``naive`` would claim
    a date was read and only its zone assumed). The time is still set so that link posts, whose
    ``<!--epoch-->`` line needs one, can be written, and the article sorts where it was found.
    """
    link = _link(entry.link, feed.base_url)
    base = link or _link(feed.link, feed.base_url) or feed.base_url
    cleaned = clean_html(_body(entry), base, image_proxy=source.image_proxy)
    published = entry.published_at or entry.updated_at
    return Article(
        id=_article_id(source.name, entry_identity(entry)),
        format=source.format,
        title=_title(entry.title),
        link=link,
        outlet=source.outlet,
        # A Hexo post with no category line cannot be read back: the outlet stands in.
        categories=list(source.categories) or [source.outlet],
        tags=_tags(entry.categories),
        published_at=(published or now).replace(microsecond=0),
        published_confidence="exact" if published else "missing",
        head_image=cleaned.first_image or _entry_image(entry, base, source),
        body_html=cleaned.html,
        text=cleaned.text,
        source=source.name,
        layout=_LAYOUTS[source.format],
    )


def entry_identity(entry: ParsedEntry) -> str:
    """What makes an entry the same item when seen again: guid, else link, else title + date."""
    if entry.guid and entry.guid.strip():
        return "guid:" + entry.guid.strip()
    if entry.link and entry.link.strip():
        return "link:" + entry.link.strip()
    published = entry.published_at or entry.updated_at
    when = published.isoformat() if published else ""
    identity = f"title:{_title(entry.title)}\n{when}"
    if not entry.title.strip() and published is None:
        identity += "\n" + _body(entry)  # nothing else tells such items apart
    return identity


def _article_id(source: str, identity: str) -> str:
    text = f"{source}\n{identity}"
    return hashlib.blake2b(text.encode("utf-8", "replace"), digest_size=16).hexdigest()


def _body(entry: ParsedEntry) -> str:
    return entry.content_html or entry.summary_html or ""


def _title(text: str) -> str:
    """One line of plain text: entities decoded once more (feeds often escape titles twice,
    ``&amp;quot;``) and tags that decoding uncovers dropped, so no title carries markup into a
    Jekyll page, which prints titles unescaped."""
    if "&" in text:
        text = html.unescape(text)
    for _ in range(3):
        if TAG_LIKE.search(text) is None:
            break
        text = html_to_text(text)
    else:
        text = TAG_LIKE.sub("", text)
    return _one_line(text)


def _one_line(text: str) -> str:
    if _UNWRITABLE.search(text):
        text = _UNWRITABLE.sub("", text)
    return " ".join(text.split())


def _link(link: str | None, base_url: str) -> str | None:
    """An http(s) link that fits a link post's ``[title](link)`` line, else None."""
    if not link:
        return None
    safe = safe_url(_UNWRITABLE.sub("", link), base_url, media=True)
    return _escape_brackets(safe.replace(" ", "%20")) if safe else None


def _escape_brackets(url: str) -> str:
    """``[`` and ``]`` percent-encoded outside the host (RFC 3986 allows them only around an
    IPv6 address): a ``](`` in a URL would end the Markdown link early."""
    if "[" not in url and "]" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:  # "[" without "]" in the host: no valid IPv6 address to keep
        return url.replace("[", "%5B").replace("]", "%5D")
    rest = urlunsplit(("", "", parts.path, parts.query, parts.fragment))
    rest = rest.replace("[", "%5B").replace("]", "%5D")
    return f"{parts.scheme}://{parts.netloc}{rest}"


def _tags(categories: list[str]) -> list[str]:
    tags = (_one_line(_TAG_UNSAFE.sub(" ", c)) for c in categories)
    return list(dict.fromkeys(t for t in tags if t))


def _entry_image(entry: ParsedEntry, base: str, source: SourceSettings) -> str | None:
    if not entry.image:
        return None
    safe = safe_url(_UNWRITABLE.sub("", entry.image), base, media=True)
    return (
        proxy_image(_escape_brackets(safe.replace(" ", "%20")), source.image_proxy)
        if safe
        else None
    )
