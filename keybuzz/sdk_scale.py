"""A linear cycle check for the Pulumi Python SDK, so that evaluation time grows with the nodes, not their square.

Why: at every dependency it records (each ``depends_on``, each input taken from another resource's
output), the SDK checks that the new edge closes no cycle by walking everything the dependency
depends on, recursively (pulumi/runtime/resource_cycle_breaker.py, ``_reachable`` through the
generator ``_with_transitive_deps``): O(N) per edge, O(N^2) per program, and one Python frame per
link of the longest chain (a RecursionError near 1,000). In a rollout every batch waits for the one
before, so most edges point into a graph as big as the cluster; measured under the mock engine
(bin/bench), the walk was half of a 200-node evaluation and grew with the square.

What: the same answer, found faster. The new edge ``from -> to`` closes a cycle iff ``from`` is
reachable from ``to``. A resource that nothing depends on yet is reachable from nothing, so there
is nothing to walk; that is the common case (a resource declares its dependencies as it is
registered, before anything registered later depends on it). Otherwise the walk is iterative
(no recursion limit). Edges, their order, what is sent to the engine and the SDK's error on a
cycle are unchanged: only ``_reachable`` and the bookkeeping in ``_add_dep`` are replaced.

``install()`` must run before the first resource is declared (components/stack.py ``build`` does):
the "nothing depends on it" mark is kept from then on. Checked against pulumi 3.272; an SDK whose
module lacks these functions is left as it is.

Also (``install_pickle_unwrap``, from ``install``): pulumi.dynamic's ``serialize_provider`` wraps
``pickle._Pickler._batch_setitems`` in a sorting wrapper at every dynamic resource and never
unwraps it (pulumi 3.272, dynamic/dynamic.py), so every dict pickled after the k-th dynamic
resource goes through k nested frames. Past ~950 dynamic resources in one program that is a
RecursionError inside a resource's constructor, and the evaluation hangs: 500 nodes at batch size
1 with checks between batches have a resize and a check per node. Each call now leaves the method
as it found it; the provider pickles to the same bytes (sorting sorted items again changes nothing).
"""

from __future__ import annotations

from typing import Any

_HAS_DEPENDENTS = "_keybuzz_has_dependents"
_INSTALLED = "_keybuzz_linear_cycle_check"
_PICKLE_UNWRAPPED = "_keybuzz_pickle_unwrapped"


def reachable(from_resource: Any, to_resource: Any, deps: Any) -> bool:
    """True when ``to_resource`` is ``from_resource`` or among its transitive dependencies (``deps(r)``:
    r's direct ones). Same answer as the SDK's ``_reachable``."""
    if from_resource is to_resource:
        return True
    if not getattr(to_resource, _HAS_DEPENDENTS, False):
        return False  # nothing depends on it: no path ends there
    seen = {id(from_resource)}
    stack = [from_resource]
    while stack:
        for dep in deps(stack.pop()):
            if dep is to_resource:
                return True
            if id(dep) not in seen:
                seen.add(id(dep))
                stack.append(dep)
    return False


def install() -> bool:
    """Replace the SDK's cycle walk with ``reachable`` (once per process); False when the SDK's
    module does not have the expected shape and was left alone."""
    from pulumi.runtime import resource_cycle_breaker as breaker

    install_pickle_unwrap()
    if getattr(breaker, _INSTALLED, False):
        return True
    if not all(callable(getattr(breaker, f, None)) for f in ("_reachable", "_add_dep", "_deps", "declare_dependency")):
        return False
    add_dep, deps = breaker._add_dep, breaker._deps

    def _add_dep(from_resource: Any, to_resource: Any) -> None:
        setattr(to_resource, _HAS_DEPENDENTS, True)
        return add_dep(from_resource, to_resource)

    def _reachable(from_resource: Any, to_resource: Any) -> bool:
        return reachable(from_resource, to_resource, deps)

    breaker._add_dep = _add_dep
    breaker._reachable = _reachable
    setattr(breaker, _INSTALLED, True)
    return True


def install_pickle_unwrap() -> bool:
    """Make pulumi.dynamic's ``serialize_provider`` restore ``pickle._Pickler._batch_setitems`` after
    each call (once per process); False when the SDK's module does not have the expected shape."""
    import pickle

    from pulumi.dynamic import dynamic

    if getattr(dynamic, _PICKLE_UNWRAPPED, False):
        return True
    serialize = getattr(dynamic, "serialize_provider", None)
    if not callable(serialize) or not callable(getattr(pickle._Pickler, "_batch_setitems", None)):
        return False

    def serialize_provider(provider: Any) -> str:
        # Synchronous, in a resource's constructor: no other serialization runs in between.
        before = pickle._Pickler._batch_setitems  # type: ignore[attr-defined]
        try:
            return serialize(provider)
        finally:
            pickle._Pickler._batch_setitems = before  # type: ignore[attr-defined]

    # dynamic.Resource.__init__ looks the function up in its module at each call.
    dynamic.serialize_provider = serialize_provider
    setattr(dynamic, _PICKLE_UNWRAPPED, True)
    return True
