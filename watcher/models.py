"""Types named for their stage of life; every stage talks to the others through these.

    (dump file | feed entry) -> Article -> (Story, later issues)

Only pydantic and the standard library here: no I/O, no settings, no stage imports.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

ArchiveFormat = Literal["hexo", "link", "jekyll", "early"]
"""The dump variants: Hexo post, link post, Jekyll link post, early link post."""

DateStyle = Literal[
    "rfc1123",  # Mon, 03 Jan 2022 05:20:20 GMT          (Hexo)
    "naive",  # 2021-08-07 05:06:37, read as UTC          (old Hexo)
    "invalid",  # Invalid Date                            (Hexo, no date at all)
    "iso_ms",  # 2020-12-01T04:17:00.000Z                 (Jekyll)
    "iso_offset",  # 2021-12-16T10:28:36+00:00            (Jekyll without link lines)
    "rfc822",  # Tue, 30 Jun 2020 15:04:14 +0000          (early link post)
    "epoch",  # only the <!--epoch-ms--> line             (link post)
]
"""How a dump file writes its date; ``render`` writes ``published_at`` back in this style."""

PublishedConfidence = Literal["exact", "naive", "missing"]
"""``naive``: the file gave no zone and UTC was assumed; ``missing``: no usable date."""


class Layout(BaseModel):
    """What ``render`` needs beyond an article's fields to write its dump file byte for byte.

    Every field has the default a newly written article gets; ``parse`` sets only what a file
    does differently. Overrides (``*_text``, ``epoch_ms``) are set only when the value cannot be
    derived from the article's fields.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    date_style: DateStyle = "rfc1123"
    date_text: str | None = None
    # Hexo
    title_quote: Literal["'", '"', ""] | None = None  # None: the generator's rule
    category_indent: int = 1
    head_image_key: Literal["quoted", "empty", "absent"] | None = None  # None: from head_image
    thumbnail_bare: bool = False
    braces_escaped: bool = True
    # Jekyll
    jekyll_layout: str = "post"
    comments: bool | None = None
    link_lines: bool = True  # Jekyll body opens with <!--epoch--> and [title](link)
    epoch_ms: int | None = None  # the <!--epoch--> when it differs from published_at


class Article(BaseModel):
    """One news item in the one schema every stage shares: a dump file or a feed entry."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="stable id: content hash for dump files, source+guid for feeds")
    format: ArchiveFormat
    title: str
    title_written: str | None = Field(
        default=None, description="the title as the file writes it, when that differs"
    )
    link: str | None = None
    outlet: str
    author: str | None = None
    categories: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    published_at: datetime | None = None
    published_confidence: PublishedConfidence = "exact"
    head_image: str | None = None
    body_html: str = ""
    text: str = Field(default="", description="visible text of body_html, for matching")
    source: str | None = Field(default=None, description="the configured source it came from")
    origin: str | None = Field(
        default=None, description="path of the dump file, relative to the backfill root"
    )
    layout: Layout = Field(default_factory=Layout)

    @field_validator("published_at")
    @classmethod
    def _must_be_aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("published_at must be timezone-aware")
        return value


class SourceState(BaseModel):
    """Per-source polling state kept in the store: the first-class error record of a source.

    ``last_error``, ``consecutive_failures`` and ``next_check_at`` are reset on success and
    on 304; ``paused`` is set after too many failures in a row and cleared by hand.
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    url: str | None = Field(default=None, description="the feed URL after permanent redirects")
    etag: str | None = None
    last_modified: str | None = None
    last_checked_at: datetime | None = None
    next_check_at: datetime | None = None
    last_error: str | None = None
    consecutive_failures: int = 0
    paused: bool = False
    last_success_at: datetime | None = None
    last_status: int | None = Field(default=None, description="HTTP status of the last fetch")
    body_hash: str | None = Field(default=None, description="hash of the last body parsed")


class FetchResult(BaseModel):
    """What one fetch of a source brought back; status is data here, ``fetch`` decides nothing.

    A 304 is a normal result (``not_modified``, no body). Hints that push the next check later
    (``Retry-After``, ``Cache-Control: max-age``, ``Expires``) are carried in ``retry_after_s``
    and ``max_age_s``; the scheduler decides what to do with them.
    """

    model_config = ConfigDict(extra="forbid")

    source: str
    url: str = Field(description="the URL asked for (after the via prefix / RSSHub instance)")
    final_url: str = Field(description="the URL the body came from, after redirects")
    status: int
    headers: dict[str, str] = Field(default_factory=dict, description="lower-case names")
    body: bytes | None = None
    not_modified: bool = False
    etag: str | None = None
    last_modified: str | None = None
    permanent_redirect: str | None = Field(
        default=None, description="the new URL when a 301/308 moved the feed for good"
    )
    retry_after_s: float | None = None
    max_age_s: float | None = None
    instance: str | None = Field(default=None, description="the RSSHub instance that answered")
    fetched_at: datetime
    elapsed_s: float = 0.0


class ParsedEntry(BaseModel):
    """One feed item as the feed gave it, before normalizing (HTML not yet cleaned)."""

    model_config = ConfigDict(extra="forbid")

    guid: str | None = None
    link: str | None = None
    title: str = ""
    author: str | None = None
    categories: list[str] = Field(default_factory=list)
    published_at: datetime | None = None
    updated_at: datetime | None = None
    content_html: str | None = Field(default=None, description="content:encoded or content")
    summary_html: str | None = None
    image: str | None = Field(default=None, description="enclosure or media:thumbnail image")


class ParsedFeed(BaseModel):
    """A parsed feed: its entries and the polling hints it carries (ttl, skipHours, skipDays)."""

    model_config = ConfigDict(extra="forbid")

    title: str = ""
    link: str | None = None
    base_url: str = Field(description="the URL relative links resolve against")
    entries: list[ParsedEntry] = Field(default_factory=list)
    ttl_minutes: int | None = None
    skip_hours: list[int] = Field(default_factory=list, description="UTC hours 0-23")
    skip_days: list[str] = Field(default_factory=list, description="Monday ... Sunday")
    warning: str | None = Field(
        default=None, description="feedparser's bozo message when it read the feed anyway"
    )
