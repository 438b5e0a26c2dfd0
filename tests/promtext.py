"""A strict little reader of the Prometheus text format 0.0.4, for the metrics and server tests.

    families = parse_prometheus(text)        {name: Family(kind, help, samples)}
    families["watcher_fetches_total"].samples[(("source", "a"), ("status", "200"))] == 1.0

Raises AssertionError on anything the format does not allow: a sample before its TYPE line, a
sample of another family, a bad name, an unterminated label value, a duplicate series.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

Labels = tuple[tuple[str, str], ...]

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(rf"({_NAME})(\{{.*\}})? (\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\[\\"n])*)"(,|$)')
_SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "counter": ("",), "gauge": ("",)}


@dataclass
class Family:
    """One metric family: its type, help text and samples by (sample name, labels)."""

    kind: str
    help: str = ""
    samples: dict[tuple[str, Labels], float] = field(default_factory=dict)

    def value(self, sample: str, /, **labels: str) -> float:
        """The sample called ``sample`` with exactly these labels."""
        return self.samples[(sample, tuple(sorted(labels.items())))]


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m[1] == "n" else m[1], value)


def _labels(text: str) -> Labels:
    inner, pairs, pos = text[1:-1], [], 0
    while pos < len(inner):
        found = _LABEL.match(inner, pos)
        assert found is not None, f"bad labels: {text}"
        pairs.append((found[1], _unescape(found[2])))
        pos = found.end()
    return tuple(sorted(pairs))


def _number(text: str) -> float:
    special = {"+Inf": math.inf, "-Inf": -math.inf, "NaN": math.nan}
    return special[text] if text in special else float(text)


def parse_prometheus(text: str) -> dict[str, Family]:
    """Every family in ``text``; AssertionError on a line the format does not allow."""
    assert text.endswith("\n"), "the exposition must end with a newline"
    families: dict[str, Family] = {}
    helps: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, help_text = line[7:].partition(" ")
            helps[name] = _unescape(help_text)
        elif line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            assert kind in _SUFFIXES, f"unknown type {kind!r}"
            assert name not in families, f"{name} declared twice"
            families[name] = Family(kind, helps.get(name, ""))
        elif line and not line.startswith("#"):
            _add_sample(families, line)
    return families


def _add_sample(families: dict[str, Family], line: str) -> None:
    found = _SAMPLE.fullmatch(line)
    assert found is not None, f"bad sample line: {line!r}"
    name, labels = found[1], _labels(found[2]) if found[2] else ()
    family = next(
        (f for base, f in families.items() if any(name == base + s for s in _SUFFIXES[f.kind])),
        None,
    )
    assert family is not None, f"sample {name} has no TYPE line before it"
    assert (name, labels) not in family.samples, f"duplicate series {line!r}"
    family.samples[(name, labels)] = _number(found[3])
