"""Types named for their stage of life; every stage talks to the others through these.

    (dump file | feed entry) -> Article -> Story (dedupe) -> StoryView -> Match (rules)
    -> Alert (one per story x rule x channel) -> Delivery (outbox)

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
    redirected_from: str | None = Field(
        default=None, description="the configured URL that ``url`` was redirected from"
    )


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


class StoryMember(BaseModel):
    """One article of a story: what ``watcher stories`` lists, and how it joined."""

    model_config = ConfigDict(extra="forbid")

    article_id: str
    outlet: str
    title: str
    link: str | None = None
    published_at: datetime | None = None
    origin: str | None = None
    similarity: float = Field(default=1.0, description="to the member it matched; 1 for the first")
    matched_id: str | None = Field(default=None, description="the member it matched")


class Story(BaseModel):
    """Copies of one article across outlets, grouped by the dedupe stage (issue 4).

    ``id`` is the id of the article that started the story; ``canonical_id`` is its
    earliest-published member; ``outlets`` grow in the order they first published it.
    """

    model_config = ConfigDict(extra="forbid")

    id: str
    canonical_id: str
    outlets: list[str] = Field(default_factory=list)
    first_published_at: datetime | None = None
    updated_at: datetime
    members: list[StoryMember] = Field(default_factory=list)


# --- rules and alerts (issue 5): StoryView -> Match -> Alert -> Delivery --------------------------

RuleField = Literal["title", "text", "outlet", "categories", "link"]
"""The parts of a story a rule can search; a rule searches title and text unless told."""

Span = tuple[int, int]
"""``(start, end)`` character offsets into a text, end exclusive."""


class StoryView(BaseModel):
    """What the rules see of a story: one member's words and the whole story's reach.

    ``title``, ``text`` and ``link`` are those of one member (the article that just arrived, or
    the canonical one); ``outlets``, ``categories`` and ``sources`` are the union over every
    member, so a scope or ``min_outlets`` counts the whole story.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    story_id: str
    article_id: str | None = None
    title: str
    text: str = ""
    link: str | None = None
    published_at: datetime | None = None
    outlets: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    folded: tuple[str, str] | None = None
    """``title`` and ``text`` folded as the rules compare them (``folding.fold_title_text``),
    when that was done already where the article was parsed; None: the rules fold them."""


class Highlight(BaseModel):
    """Where a matched term occurs in one field of a StoryView, in the field's original text."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    field: RuleField
    start: int
    end: int
    term: str = Field(description="the rule's term (as configured) found there")


class Match(BaseModel):
    """A rule fired on a story: which terms made it fire, and where they are."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rule: str
    story_id: str
    article_id: str | None = None
    terms: tuple[str, ...] = Field(description="terms and patterns found, in the rule's order")
    highlights: tuple[Highlight, ...] = ()
    outlet_count: int = Field(description="distinct outlets of the story when it matched")
    matched_at: datetime


class Alert(BaseModel):
    """One message owed to one channel for one story and rule; what a Notifier sends.

    ``key`` is the idempotency key of story x rule x channel: the outbox keeps one alert per key,
    and every email and webhook payload carries it. Everything needed to render the alert is
    here (no store look-up at send time); highlights are spans of ``title`` and ``excerpt``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str
    channel: str
    rule: str
    story_id: str
    article_id: str | None = None
    terms: tuple[str, ...] = ()
    title: str
    title_highlights: tuple[Span, ...] = ()
    excerpt: str = ""
    excerpt_highlights: tuple[Span, ...] = ()
    link: str | None = None
    outlets: tuple[str, ...] = ()
    published_at: datetime | None = None
    created_at: datetime


DeliveryStatus = Literal["pending", "sent", "failed"]
"""``failed``: the outbox gave up retrying (or the channel is gone); ``pending`` retries."""


class Delivery(BaseModel):
    """The outbox's record of one alert on its channel: attempts, last error, when sent."""

    model_config = ConfigDict(extra="forbid")

    key: str
    channel: str
    status: DeliveryStatus = "pending"
    attempts: int = 0
    last_error: str | None = None
    next_attempt_at: datetime | None = None
    sent_at: datetime | None = None
