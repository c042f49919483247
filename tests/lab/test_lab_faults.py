"""The fault matrix on the lab: real tools, the checks' generated scripts, the real judges.

Each scenario injects one fault (tests/lab/scenarios.py), runs the checks it concerns through
``run_check`` with only the exec transport swapped, and asserts the verdict and the named cause.
"""

import pytest
from scenarios import BY_NAME, EXPECTED, check_verdict, inputs

from keybuzz.verify.checks import run_check
from keybuzz.verify.plan import Timeouts

CASES = sorted(EXPECTED)


@pytest.mark.parametrize(("scenario", "check"), CASES, ids=[f"{s}-{c}" for s, c in CASES])
def test_fault_is_caught_and_named(clean_lab, scenario, check):
    BY_NAME[scenario].inject(clean_lab)
    access = clean_lab.access()
    verdict = run_check(check, inputs(clean_lab, **BY_NAME[scenario].overrides), lambda: access,
                        sleep=lambda s: None)
    check_verdict(verdict, EXPECTED[(scenario, check)], sorted(clean_lab.nodes))


def test_every_scenario_has_its_expectations():
    assert {(s.name, c) for s in BY_NAME.values() for c in s.checks} == set(EXPECTED)


def test_a_probe_slower_than_the_deadline_keeps_the_finished_probes(clean_lab):
    """The bulk probe outlives the exec; the pings and MTU reads that finished are still judged."""
    clean_lab.set_path_mtu(1400, icmp=False)  # bulk transfers stall until curl gives up
    access = clean_lab.access()
    # The pings end within ~1.5 s; the exec gets 3 s; a stalled bulk transfer waits its 8 s.
    slow_bulk = inputs(clean_lab, timeout_seconds=4.0, timeouts=Timeouts(connect_s=1, request_s=2, bulk_s=8))
    verdict = run_check("mtu", slow_bulk, lambda: access, sleep=lambda s: None)
    message = verdict.message(sorted(clean_lab.nodes))
    assert not verdict.ok
    # The DF pings finished (lost, no Frag needed): the black hole is named from them, on every path...
    assert verdict.causes() == [next(c for c in verdict.causes() if c.startswith("MTU black hole"))], message
    assert len(verdict.failures) == 6
    # ... the bulk transfer is reported unfinished, and neither the API nor the kubelet is blamed.
    assert all("bulk transfer did not finish before the deadline (8 s budget)" in f.what for f in verdict.failures)
    assert "exec" not in message
