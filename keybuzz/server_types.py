"""Hetzner Cloud server types the program accepts, per location.

Source: Hetzner Cloud server type line-up as documented on docs.hetzner.com ("Servers > Overview")
and hetzner.com/cloud, and /work/shared/FIELD_GUIDE.md, read 2026-12-01:
- cost-optimized shared Intel/AMD (cx23..cx53, and the older cx22..cx52): EU locations only;
- regular-performance shared AMD (cpx11..cpx51, cpx12..cpx62) and dedicated AMD (ccx13..ccx63):
  every location;
- Arm (cax11..cax41): EU locations only.
A type missing here is refused before anything is created; the live list is
`hcloud server-type list` (or GET /v1/server_types, per-location prices). When Hetzner adds a
type, add it here.
"""

from __future__ import annotations

import difflib

EU_LOCATIONS = ("fsn1", "nbg1", "hel1")
ALL_LOCATIONS = (*EU_LOCATIONS, "ash", "hil", "sin")

_COST_OPTIMIZED = ("cx23", "cx33", "cx43", "cx53", "cx22", "cx32", "cx42", "cx52")
_REGULAR = ("cpx12", "cpx22", "cpx32", "cpx42", "cpx52", "cpx62", "cpx11", "cpx21", "cpx31", "cpx41", "cpx51")
_DEDICATED = ("ccx13", "ccx23", "ccx33", "ccx43", "ccx53", "ccx63")
_ARM = ("cax11", "cax21", "cax31", "cax41")

# server type -> locations where it can be ordered
SERVER_TYPE_LOCATIONS: dict[str, tuple[str, ...]] = {
    **{t: EU_LOCATIONS for t in _COST_OPTIMIZED},
    **{t: ALL_LOCATIONS for t in _REGULAR},
    **{t: ALL_LOCATIONS for t in _DEDICATED},
    **{t: EU_LOCATIONS for t in _ARM},
}


def types_in(location: str) -> tuple[str, ...]:
    """Every known type offered in ``location``, in table order."""
    return tuple(t for t, where in SERVER_TYPE_LOCATIONS.items() if location in where)


def server_type_problem(server_type: str, location: str) -> str | None:
    """None when ``server_type`` can be ordered in ``location``; else what is allowed, with a did-you-mean."""
    where = SERVER_TYPE_LOCATIONS.get(server_type)
    if where is None:
        offered = types_in(location) or tuple(SERVER_TYPE_LOCATIONS)
        family = server_type.rstrip("0123456789")
        # Short names score low on similarity (cx9999 vs cx23): fall back to the same family's types.
        close = difflib.get_close_matches(server_type, offered, n=3, cutoff=0.5) or [
            t for t in offered if t.rstrip("0123456789") == family
        ][:4]
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        return f"{hint}a Hetzner server type offered in {location}: {', '.join(types_in(location))}"
    if location not in where:
        return (
            f"a type offered in {location} ({server_type} is sold only in {', '.join(where)}); "
            f"in {location}: {', '.join(types_in(location))}"
        )
    return None
