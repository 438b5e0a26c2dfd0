"""watcher: a feed-monitoring daemon that archives news as dump files."""

__version__ = "0.1.0"
