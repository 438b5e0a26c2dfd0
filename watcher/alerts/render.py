"""An alert as people read it: subject, plain text, HTML, and the marked-up text chat apps take.

    subject(alerts)                      one line, at most SUBJECT_MAX characters
    plain_text(alerts, zone)             the text/plain part of an email (and ntfy's body)
    html(alerts, zone)                   the text/html part: every value escaped, links http(s)
    marked(text, spans, escape, open, close)   text with its highlights wrapped, for any markup

One alert or several (a digest) go through the same functions. Titles, excerpts and links come
from feeds, so they are hostile input: HTML is escaped (``html.escape`` with quotes), a link is
kept only when it is an http(s) URL with a host, and it is percent-encoded, so no ``<script>``,
``javascript:`` or attribute break-out reaches a mail client or a chat app.

Does not: send anything, pick a channel, or look anything up: an Alert carries all it shows.
"""

from __future__ import annotations

import html as html_lib
from collections.abc import Callable, Sequence
from datetime import datetime, tzinfo
from urllib.parse import quote, urlsplit, urlunsplit

from watcher.models import Alert, Span

SUBJECT_MAX = 140
PRODUCT = "watcher"
_URL_SAFE = ";/?:@&=+$,-_.!~*'#%[]"  # RFC 3986 reserved and unreserved; the rest is encoded
_HIGHLIGHT_STYLE = "background:#ffe066;padding:0 1px"


# --- small pieces ---------------------------------------------------------------------------------


def safe_link(url: str | None) -> str | None:
    """``url`` as an http(s) URL safe in any markup (percent-encoded), or None if it is not one."""
    if not url:
        return None
    cleaned = "".join(c for c in url.strip() if c.isprintable() and not c.isspace())
    try:
        parts = urlsplit(cleaned)
        host = parts.hostname
        netloc = parts.netloc if parts.netloc.isascii() else _ascii_netloc(parts.netloc)
    except (ValueError, UnicodeError):
        return None
    if parts.scheme.lower() not in ("http", "https") or not host:
        return None
    rebuilt = urlunsplit((parts.scheme.lower(), netloc, parts.path, parts.query, parts.fragment))
    return quote(rebuilt, safe=_URL_SAFE)


def _ascii_netloc(netloc: str) -> str:
    login, at, hostport = netloc.rpartition("@")
    host, colon, port = hostport.partition(":")
    return f"{login}{at}{host.encode('idna').decode('ascii')}{colon}{port}"


def squeeze(text: str, spans: Sequence[Span] = ()) -> tuple[str, tuple[Span, ...]]:
    """Whitespace runs folded to one space and the ends stripped; ``spans`` moved to match."""
    out: list[str] = []
    position: list[int] = []  # position[i]: index in the output of input character i
    for char in text:
        position.append(len(out))
        if char.isspace():
            if out and out[-1] != " ":
                out.append(" ")
        else:
            out.append(char)
    position.append(len(out))
    if out and out[-1] == " ":
        out.pop()
    squeezed = "".join(out)
    moved = ((position[s], min(position[e], len(squeezed))) for s, e in spans)
    return squeezed, tuple((s, e) for s, e in moved if e > s)


def shorten(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, with an ellipsis when cut."""
    return text if len(text) <= limit else text[: max(limit - 1, 0)].rstrip() + "…"


def excerpt(text: str, spans: Sequence[Span], width: int = 240) -> tuple[str, tuple[Span, ...]]:
    """About ``width`` characters of ``text`` around its first span, whitespace folded."""
    squeezed, moved = squeeze(text, spans)
    if len(squeezed) <= width:
        return squeezed, moved
    first = moved[0][0] if moved else 0
    start = max(0, min(first - width // 4, len(squeezed) - width))
    if start:
        space = squeezed.find(" ", start, first)
        start = space + 1 if 0 <= space < first else start
    end = min(len(squeezed), start + width)
    if end < len(squeezed) and (space := squeezed.rfind(" ", start + width // 2, end)) > 0:
        end = space
    head, tail = ("…" if start else ""), ("…" if end < len(squeezed) else "")
    shift = len(head) - start
    kept = tuple(
        (max(s, start) + shift, min(e, end) + shift) for s, e in moved if s < end and e > start
    )
    return head + squeezed[start:end] + tail, kept


def marked(
    text: str,
    spans: Sequence[Span],
    escape: Callable[[str], str],
    opening: str,
    closing: str,
) -> str:
    """``text`` escaped by ``escape``, each span wrapped in ``opening``/``closing``."""
    parts, at = [], 0
    for start, end in sorted(spans):
        if start < at or end > len(text):
            continue  # overlapping or out of range: never split an escape sequence
        parts += [escape(text[at:start]), opening, escape(text[start:end]), closing]
        at = end
    parts.append(escape(text[at:]))
    return "".join(parts)


def local_time(when: datetime | None, zone: tzinfo) -> str:
    """``2026-11-03 13:20 +08:00`` in ``zone``, or ``unknown``."""
    if when is None:
        return "unknown"
    local = when.astimezone(zone)
    offset = local.strftime("%z")
    return f"{local:%Y-%m-%d %H:%M} {offset[:3]}:{offset[3:]}"


def outlets_line(alert: Alert) -> str:
    """``路透, 联合早报 (2 outlets)`` or the one outlet."""
    if len(alert.outlets) <= 1:
        return alert.outlets[0] if alert.outlets else "unknown"
    return f"{', '.join(alert.outlets)} ({len(alert.outlets)} outlets)"


def terms_line(alert: Alert) -> str:
    """The matched terms, comma-separated."""
    return ", ".join(alert.terms) or "(none)"


def _plain(text: str) -> str:
    return text


def _html_text(text: str) -> str:
    return html_lib.escape(text, quote=True)


# --- email bodies and subject ---------------------------------------------------------------------


def subject(alerts: Sequence[Alert]) -> str:
    """``[watcher] ukraine: <title>``; a digest: ``[watcher] 3 alerts: ukraine, taiwan``."""
    if len(alerts) == 1:
        alert = alerts[0]
        line = f"[{PRODUCT}] {alert.rule}: {squeeze(alert.title)[0]}"
    else:
        rules = ", ".join(dict.fromkeys(a.rule for a in alerts))
        line = f"[{PRODUCT}] {len(alerts)} alerts: {rules}"
    return shorten(line, SUBJECT_MAX)


def plain_text(alerts: Sequence[Alert], zone: tzinfo, *, key: str) -> str:
    """The text/plain body: each alert's title, rule and terms, outlets, time, link, excerpt."""
    blocks = [_plain_block(alert, zone) for alert in alerts]
    if len(alerts) > 1:
        blocks = [f"{len(alerts)} alerts", *(f"{i}. {b}" for i, b in enumerate(blocks, 1))]
    footer = f"-- \n{PRODUCT} alert {key}\n"
    return "\n\n".join(blocks) + "\n\n" + footer


def _plain_block(alert: Alert, zone: tzinfo) -> str:
    lines = [
        marked(alert.title, alert.title_highlights, _plain, "*", "*"),
        "",
        f"Rule:      {alert.rule}",
        f"Matched:   {terms_line(alert)}",
        f"Outlets:   {outlets_line(alert)}",
        f"Published: {local_time(alert.published_at, zone)}",
    ]
    link = safe_link(alert.link)
    if link:
        lines.append(f"Link:      {link}")
    if alert.excerpt:
        lines += ["", marked(alert.excerpt, alert.excerpt_highlights, _plain, "*", "*")]
    return "\n".join(lines)


def html(alerts: Sequence[Alert], zone: tzinfo, *, key: str) -> str:
    """The text/html body: the same as plain_text, escaped, with matched terms in <mark>."""
    title = _html_text(subject(alerts))
    sections = "\n".join(_html_block(alert, zone) for alert in alerts)
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{title}</title></head>\n"
        '<body style="font-family:sans-serif;line-height:1.5">\n'
        f"{sections}\n"
        f'<p style="color:#888;font-size:small">{PRODUCT} alert {_html_text(key)}</p>\n'
        "</body></html>\n"
    )


def _html_block(alert: Alert, zone: tzinfo) -> str:
    mark = f'<mark style="{_HIGHLIGHT_STYLE}">'
    title = marked(alert.title, alert.title_highlights, _html_text, mark, "</mark>")
    link = safe_link(alert.link)
    if link:
        title = f'<a href="{_html_text(link)}">{title}</a>'
    terms = ", ".join(f"{mark}{_html_text(t)}</mark>" for t in alert.terms)
    rows = [
        f'<h3 style="margin-bottom:4px">{title}</h3>',
        f"<p>Rule <b>{_html_text(alert.rule)}</b> matched {terms}<br>",
        f"{_html_text(outlets_line(alert))} · {_html_text(local_time(alert.published_at, zone))}",
        "</p>",
    ]
    if alert.excerpt:
        text = marked(alert.excerpt, alert.excerpt_highlights, _html_text, mark, "</mark>")
        rows.append(f'<blockquote style="color:#333">{text}</blockquote>')
    return "<div>\n" + "\n".join(rows) + "\n</div>"
