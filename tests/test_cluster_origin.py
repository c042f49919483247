"""The record of which Hetzner server created the cluster (keybuzz/cluster_origin.py)."""

from __future__ import annotations

from keybuzz.cluster_origin import ORIGIN_ID, ClusterOriginProvider, may_initialise


def test_creation_records_the_first_servers_id():
    created = ClusterOriginProvider().create({"serverId": 4242})
    assert (created.id, created.outs) == (ORIGIN_ID, {"serverId": "4242"})


def test_a_new_first_server_id_is_never_a_change():
    # A replaced cp-1 (new id) must not become the cluster's creator: the engine keeps the old outputs.
    diff = ClusterOriginProvider().diff(ORIGIN_ID, {"serverId": "4242"}, {"serverId": "9999"})
    assert diff.changes is False and not diff.replaces
    assert ClusterOriginProvider().update(ORIGIN_ID, {"serverId": "4242"}, {"serverId": "9999"}).outs == {
        "serverId": "4242"
    }


def test_only_the_recorded_server_may_initialise():
    assert may_initialise("4242", "4242") is True
    assert may_initialise("9999", "4242") is False
    assert may_initialise("", "") is False  # an unknown id never initialises
