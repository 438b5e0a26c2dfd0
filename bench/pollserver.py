"""A bare asyncio HTTP/1.1 server for ``bench/poll.py``, run in its own process.

    python bench/pollserver.py FEED_DIR [--idle-s 30]

Serves every ``FEED_DIR/*.xml`` at ``/<name>.xml`` on 127.0.0.1 (a free port, printed as
``listening <port>`` on stdout) from memory, with an ETag and a Last-Modified, and answers 304
when ``If-None-Match`` names the ETag (or, without one, when ``If-Modified-Since`` equals the
Last-Modified). Keep-alive, no compression, GET and HEAD only. It stops when its stdin closes
(the benchmark that started it went away) or on SIGTERM.

It lives in its own process so that serving 171 MB does not take CPU from the measured one; it
uses the stdlib only, so it runs with any Python 3.11.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import signal
import sys
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path

LAST_MODIFIED = formatdate(1_793_000_000, usegmt=True)  # fixed: every run serves the same feeds
CONTENT_TYPE = "application/rss+xml; charset=utf-8"
MAX_HEAD = 65536


@dataclass(frozen=True)
class Feed:
    """One served feed: its full answer, its 304 answer, and its ETag."""

    ok: bytes
    head_only: bytes
    not_modified: bytes
    etag: str


def load_feeds(folder: Path) -> dict[str, Feed]:
    """Every ``*.xml`` of ``folder`` as a ready-made answer, keyed by its path."""
    feeds: dict[str, Feed] = {}
    for path in sorted(folder.glob("*.xml")):
        body = path.read_bytes()
        etag = '"' + hashlib.blake2b(body, digest_size=8).hexdigest() + '"'
        common = f"ETag: {etag}\r\nLast-Modified: {LAST_MODIFIED}\r\nServer: pollserver\r\n"
        head = (
            f"HTTP/1.1 200 OK\r\nContent-Type: {CONTENT_TYPE}\r\n"
            f"Content-Length: {len(body)}\r\n{common}\r\n"
        ).encode("ascii")
        not_modified = f"HTTP/1.1 304 Not Modified\r\n{common}\r\n".encode("ascii")
        feeds["/" + path.name] = Feed(head + body, head, not_modified, etag)
    return feeds


NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found"
BAD_METHOD = b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


def answer(feeds: dict[str, Feed], method: str, target: str, headers: dict[str, str]) -> bytes:
    """The bytes to send for one request."""
    if method not in ("GET", "HEAD"):
        return BAD_METHOD
    feed = feeds.get(target.split("?", 1)[0])
    if feed is None:
        return NOT_FOUND
    etag = headers.get("if-none-match")
    if etag is not None:
        fresh = feed.etag in (t.strip() for t in etag.split(","))
    else:
        fresh = headers.get("if-modified-since") == LAST_MODIFIED
    if fresh:
        return feed.not_modified
    return feed.ok if method == "GET" else feed.head_only


def read_head(raw: bytes) -> tuple[str, str, dict[str, str]]:
    """Method, target and lower-cased headers of one request head."""
    request_line, *lines = raw.decode("latin-1").split("\r\n")
    method, target, _ = request_line.split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return method, target, headers


async def serve_connection(
    feeds: dict[str, Feed],
    idle_s: float,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
) -> None:
    """Answer the requests of one keep-alive connection until it closes or idles."""
    try:
        while True:
            raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), idle_s)
            method, target, headers = read_head(raw)
            reply = answer(feeds, method, target, headers)
            writer.write(reply)
            await writer.drain()
            if reply is BAD_METHOD or headers.get("connection", "").lower() == "close":
                break
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError):
        pass
    except ConnectionError:
        pass
    finally:
        writer.close()


async def serve(folder: Path, idle_s: float) -> None:
    """Serve until stdin closes or SIGTERM arrives."""
    feeds = load_feeds(folder)
    server = await asyncio.start_server(
        lambda r, w: serve_connection(feeds, idle_s, r, w),
        "127.0.0.1",
        0,
        limit=MAX_HEAD,
        backlog=256,
    )
    port = server.sockets[0].getsockname()[1]
    print(f"listening {port} feeds={len(feeds)}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    # a pipe from the benchmark: its end means the benchmark went away (a file or a terminal
    # cannot be watched: SIGTERM only then)
    with contextlib.suppress(OSError, ValueError):
        loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not sys.stdin.read(1) else None)
    async with server:
        await stop.wait()


def main() -> None:
    """Parse the arguments and serve."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--idle-s", type=float, default=30.0)
    args = parser.parse_args()
    asyncio.run(serve(args.folder, args.idle_s))


if __name__ == "__main__":
    main()
