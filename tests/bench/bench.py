"""Evaluation cost of the program by cluster size, under the mock engine (bin/bench; not a test).

For each size the program runs once, in a fresh process (pulumi's dynamic.py wraps pickle again on
every run in one process, keybuzz/offline.py), as ``pulumi preview`` would (``--up``: as ``up``).
Printed per size: resources, the longest dependency chain (links of the graph the Pulumi SDK's
cycle check walks at every registration, pulumi/runtime/resource_cycle_breaker.py: every
``depends_on`` and every input taken from another resource's output), seconds, seconds per node.

    bin/bench [--sizes 10,50,100,500] [--batch 10%] [--stack prod] [--up] [--sdk-cycle-check]

``--sdk-cycle-check``: keep the SDK's own recursive cycle check (keybuzz/sdk_scale.py not installed),
to see what the batches alone do.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SIZES = (10, 50, 100, 500)
# Big enough for 500 nodes: workers take host offsets 20.. (keybuzz/config.py).
SUBNET = "10.0.0.0/22"


def longest_chain(edges: Iterable[tuple[str, str]]) -> int:
    """Links on the longest path of a dependency graph ((dependent, dependency) pairs); 0 without edges.

    Iterative (a chain of thousands must not need thousands of frames here either).
    """
    deps: dict[str, set[str]] = {}
    for dependent, dependency in edges:
        deps.setdefault(dependent, set()).add(dependency)
        deps.setdefault(dependency, set())
    depth: dict[str, int] = {}
    for start in deps:
        stack = [start]
        while stack:
            node = stack[-1]
            if node in depth:
                stack.pop()
                continue
            pending = [d for d in deps[node] if d not in depth]
            if pending:
                stack.extend(pending)
                continue
            depth[node] = max((depth[d] + 1 for d in deps[node]), default=0)
            stack.pop()
    return max(depth.values(), default=0)


def overrides_for(nodes: int, batch: str, servers: int) -> dict[str, object]:
    """Config for a cluster of ``nodes`` nodes: ``servers`` K3s servers, the rest one pool of workers."""
    size: object = int(batch) if batch.isdigit() else batch
    return {
        "keybuzz-k3s:controlPlane": {"count": servers, "serverType": "cx33"},
        "keybuzz-k3s:nodePools": [{"name": "workers", "count": nodes - servers, "serverType": "cx43"}],
        "keybuzz-k3s:subnetCidr": SUBNET,
        "keybuzz-k3s:agentUpgradeBatchSize": size,
    }


def measure_one(nodes: int, batch: str, stack: str, preview: bool, sdk_check: bool = False) -> Mapping[str, object]:
    """Run the program once under mocks and measure it (call in a fresh process)."""
    sys.path.insert(0, str(ROOT))
    from pulumi.runtime import resource_cycle_breaker

    from keybuzz.offline import run_program

    edges: list[tuple[str, str]] = []
    original = resource_cycle_breaker._add_dep

    def recording_add_dep(from_resource, to_resource):  # noqa: ANN001, ANN202 (the SDK's signature)
        edges.append((_key(from_resource), _key(to_resource)))
        return original(from_resource, to_resource)

    resource_cycle_breaker._add_dep = recording_add_dep
    if sdk_check:
        resource_cycle_breaker._keybuzz_linear_cycle_check = True  # sdk_scale.install() then does nothing
    servers = 3 if nodes >= 3 else 1
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 1000))  # the SDK's default: no head room added
    start = time.perf_counter()
    run = run_program(stack, preview=preview, overrides=overrides_for(nodes, batch, servers))
    seconds = time.perf_counter() - start
    return {
        "nodes": nodes,
        "resources": len(run.resources),
        "chain": longest_chain(edges),
        "seconds": round(seconds, 2),
    }


def _key(resource: object) -> str:
    return f"{getattr(resource, '_type', '?')}::{getattr(resource, '_name', id(resource))}"


def run_sizes(
    sizes: Iterable[int], batch: str, stack: str, preview: bool, sdk_check: bool = False
) -> list[dict[str, object]]:
    """Each size in its own process; a size that fails is reported with the last line of its error."""
    rows = []
    for nodes in sizes:
        cmd = [sys.executable, __file__, "--one", str(nodes), "--batch", batch, "--stack", stack]
        cmd += ([] if preview else ["--up"]) + (["--sdk-cycle-check"] if sdk_check else [])
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
        lines = done.stdout.strip().splitlines()
        if done.returncode != 0 or not lines:
            error = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
            rows.append({"nodes": nodes, "error": error})
            continue
        rows.append(json.loads(lines[-1]))
    return rows


def report(rows: list[dict[str, object]], batch: str, stack: str, preview: bool, sdk_check: bool = False) -> str:
    mode = "preview" if preview else "up"
    check = ", the SDK's own cycle check" if sdk_check else ""
    out = [
        f"stack {stack}, {mode} under the mock engine, agentUpgradeBatchSize {batch}, subnetCidr {SUBNET}{check}",
        f"{'nodes':>6} {'resources':>10} {'chain':>6} {'seconds':>8} {'s/node':>8}",
    ]
    for row in rows:
        if "error" in row:
            out.append(f"{row['nodes']:>6}  FAILED: {row['error']}")
            continue
        per_node = float(row["seconds"]) / int(row["nodes"])  # type: ignore[arg-type]
        out.append(
            f"{row['nodes']:>6} {row['resources']:>10} {row['chain']:>6} {row['seconds']:>8.2f} {per_node:>8.4f}"
        )
    good = {int(r["nodes"]): float(r["seconds"]) / int(r["nodes"]) for r in rows if "error" not in r}  # type: ignore[arg-type]
    if 50 in good and 500 in good:
        out.append(f"per-node cost at 500 / at 50: {good[500] / good[50]:.2f}x")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)))
    parser.add_argument("--batch", default="10%", help="agentUpgradeBatchSize (a number or a percentage)")
    parser.add_argument("--stack", default="prod")
    parser.add_argument("--up", action="store_true", help="evaluate as `pulumi up` (default: preview)")
    parser.add_argument("--sdk-cycle-check", action="store_true", help="keep the SDK's recursive cycle check")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one is not None:
        print(json.dumps(measure_one(args.one, args.batch, args.stack, not args.up, args.sdk_cycle_check)))
        return 0
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    rows = run_sizes(sizes, args.batch, args.stack, not args.up, args.sdk_cycle_check)
    print(report(rows, args.batch, args.stack, not args.up, args.sdk_cycle_check))
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
