"""The verdict of one check and the failures it lists: what a failed ``pulumi up`` prints."""

from __future__ import annotations

import re
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

ARROW = "→"


@dataclass(frozen=True)
class Failure:
    """One broken thing: where (a path or a node), what was observed, and its cause class."""

    where: str
    what: str
    cause: str

    def line(self) -> str:
        return f"{self.where}: {self.what}"


@dataclass
class Verdict:
    """The result of one check; ``message()`` is what a failed ``pulumi up`` prints."""

    check: str
    tested: str
    total: int
    failures: list[Failure] = field(default_factory=list)
    unit: str = "checks"
    latency_ms: dict[str, float] | None = None
    skipped: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def causes(self) -> list[str]:
        """Distinct cause classes, most frequent first."""
        counts = Counter(f.cause for f in self.failures)
        return [cause for cause, _ in counts.most_common()]

    def by_node(self, nodes: Sequence[str]) -> dict[str, int]:
        """How many failures mention each node: a node in every failing path is the suspect."""
        counts = {n: sum(1 for f in self.failures if _mentions(f.where, n)) for n in nodes}
        return {n: c for n, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if c}

    def message(self, nodes: Sequence[str] = ()) -> str:
        """One paragraph: counts, the failing paths, grouping by node, the likely causes."""
        if self.ok:
            state = "skipped" if self.skipped else "passed"
            text = f"{self.check}: {state} ({self.total} {self.unit}: {self.tested})"
            for note in self.notes:
                text += f". {note}"
            return text
        shown = [f.line() for f in self.failures[:12]]
        more = len(self.failures) - len(shown)
        listing = "; ".join(shown) + (f"; and {more} more" if more > 0 else "")
        text = f"{self.check}: {len(self.failures)} of {self.total} {self.unit} failed ({listing})"
        grouped = self.by_node(nodes)
        if grouped and len(self.failures) > 1:
            text += ". By node: " + ", ".join(f"{n} in {c}" for n, c in grouped.items())
            suspects = [n for n, c in grouped.items() if c == len(self.failures)]
            if suspects:
                text += f" (every failure involves {', '.join(suspects)})"
        text += ". Likely cause: " + " | ".join(self.causes())
        for note in self.notes:
            text += f". {note}"
        return text

    def outputs(self) -> dict[str, Any]:
        """Stack outputs: what was tested, counts, failures, latency; never secrets."""
        return {
            "check": self.check,
            "tested": self.tested,
            "total": self.total,
            "failed": len(self.failures),
            "passed": self.ok,
            "skipped": self.skipped,
            "failures": [f.line() for f in self.failures],
            "causes": self.causes(),
            "latencyMs": self.latency_ms or {},
            "notes": list(self.notes),
        }


def _mentions(where: str, node: str) -> bool:
    # ":" too: the ingress check's paths carry the port (``node-a→node-b:80``); node names never hold one.
    return node in re.split(f"[{ARROW} ,():]+", where)


def path(src: str, dst: str) -> str:
    return f"{src}{ARROW}{dst}"


def latency_summary(samples_ms: Sequence[float]) -> dict[str, float] | None:
    """min / median / max in milliseconds, rounded for humans."""
    if not samples_ms:
        return None
    return {
        "min": round(min(samples_ms), 3),
        "median": round(statistics.median(samples_ms), 3),
        "max": round(max(samples_ms), 3),
        "samples": len(samples_ms),
    }
