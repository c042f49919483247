"""Day-2 matrix, K3s side: one test per row of the README's "Day-2 operations" table.

Each test runs the program twice under the mock engine, before and after one config change, and
asserts what is declared, in what order (depends_on chains) and with what options. "Changed" means
a resource's inputs differ: for a remote command that is an in-place update (its ``update`` script
runs, or ``create`` again); a resource that disappears is deleted (its ``delete`` script runs).
"""

from __future__ import annotations

import pytest
import yaml
from fakes.node_stubs import kubectl_calls, make_stubs, run_script
from harness import run_program, secret_value
from shell_lint import assert_valid_bash

from keybuzz import k3s

P = "keybuzz-k3s"
C = "keybuzz-staging"
K = f"{C}-k3s"
WORKERS = {"name": "workers", "count": 2, "serverType": "cx33"}


def staging(**overrides):
    return run_program("staging", overrides={f"{P}:{key}": value for key, value in overrides.items()})


def k3s_resources(run):
    """The K3s component's resources and the servers, by name (what a day-2 change may touch)."""
    return {
        r.name: r
        for r in run.resources
        if r.name.startswith(f"{K}-") or r.type == "hcloud:index/server:Server"
    }


def inputs(resource):
    return {k: v for k, v in resource.inputs.items() if not k.startswith("__")}  # __provider: pickled code


def changed(before, after):
    old, new = k3s_resources(before), k3s_resources(after)
    return {name for name in old.keys() & new.keys() if inputs(old[name]) != inputs(new[name])}


def differing(before, after, name):
    old, new = inputs(before.named(name)), inputs(after.named(name))
    return {k for k in old.keys() | new.keys() if old.get(k) != new.get(k)}


def added(before, after):
    return set(k3s_resources(after)) - set(k3s_resources(before))


def removed(before, after):
    return set(k3s_resources(before)) - set(k3s_resources(after))


def per_node(steps, *nodes):
    return {f"{K}-{step}-{C}-{node}" for step in steps for node in nodes}


def deps(run, step, node):
    return run.named(f"{K}-{step}-{C}-{node}").depends_on


def barrier(index):
    return f"{K}-batch-{index}"


def drain_waits_for(run, node):
    """What the node's drain waits for from the previous batch, through that batch's overlay check
    (verify.betweenBatches, on in staging): the check's own dependencies, the previous batch's
    boundary (its one node's ready, or its barrier)."""
    (check,) = [d for d in deps(run, "drain", node) if "-rollout-check-batch-" in d]
    return run.named(check).depends_on


SERVERS = ("cp-1", "cp-2", "cp-3")
AGENTS = ("workers-1", "workers-2")


@pytest.fixture(scope="module")
def base():
    return staging()


def test_k3s_version_bump_restarts_every_node_in_place_servers_first_then_agents(base):
    bumped = staging(k3sVersion="v1.34.2+k3s1")
    nodes = SERVERS + AGENTS
    # Every node's drain, install and ready change (version in the script and the fingerprint);
    # nothing else does: no server, no label, no taint, no retire, no resize.
    assert changed(base, bumped) == per_node(("drain", "install", "ready"), *nodes)
    assert not added(base, bumped) and not removed(base, bumped)
    for node in nodes:
        install = bumped.named(f"{K}-install-{C}-{node}")
        assert "INSTALL_K3S_VERSION=v1.34.2+k3s1" in install.inputs["create"]
        # An in-place update: only triggers replace a command (the SDK's own option), and it has none.
        assert "triggers" not in install.inputs and install.options["replace_on_changes"] == ["triggers[*]"]
        assert 'kc_within 330 drain "$NODE"' in bumped.named(f"{K}-drain-{C}-{node}").inputs["update"]
        assert 'uncordon "$NODE"' in bumped.named(f"{K}-ready-{C}-{node}").inputs["update"]
    # One at a time: each node's drain waits for the previous node's batch check, which waits for that
    # node's ready (verify.betweenBatches, on in staging); agents after the last server.
    # Only the first server drains itself; only there may a missing k3s (a new machine) mean nothing to drain.
    updates = {n: bumped.named(f"{K}-drain-{C}-{n}").inputs["update"] for n in nodes}
    self_drained = [n for n in nodes if "no K3s on this machine yet" in updates[n]]
    assert self_drained == ["cp-1"]
    chain = list(nodes)
    for index, (previous, current) in enumerate(zip(chain, chain[1:], strict=False)):
        check = f"{C}-rollout-check-batch-{index}"
        assert deps(bumped, "drain", current)[1] == check
        assert bumped.named(check).depends_on == [f"{K}-ready-{C}-{previous}"]
    # Batches of one node need no barrier resource: the node's ready is the boundary.
    assert not [r.name for r in bumped.resources if r.name.startswith(f"{K}-batch-")]
    for node in chain:
        # The retire step too: a replaced server's old Node and etcd member are gone before it joins.
        assert deps(bumped, "install", node) == [f"{C}-{node}", f"{K}-resize-{C}-{node}", f"{K}-retire-{C}-{node}"]
        assert deps(bumped, "resize", node) == [f"{K}-drain-{C}-{node}"]
        assert deps(bumped, "ready", node) == [f"{K}-install-{C}-{node}"]


def test_agents_upgrade_in_batches_of_agent_upgrade_batch_size():
    pools = [{"name": "workers", "count": 5, "serverType": "cx33"}]
    run = staging(nodePools=pools, agentUpgradeBatchSize=2)
    lb = f"{C}-api-lb"
    guard = f"{K}-critical-config"
    ready = [f"{K}-ready-{C}-workers-{i}" for i in range(1, 6)]
    check = [f"{C}-rollout-check-batch-{i}" for i in range(6)]  # 3 servers, then the agents' batches
    # Batches 0..2: one server each; 3: the canary workers-1 alone (its ready is the boundary);
    # 4: workers 2-3; 5: workers 4-5. A batch of several nodes ends in one barrier that waits for each
    # ready; the batch's overlay check waits for the boundary, the next batch's drains for the check.
    assert deps(run, "drain", "workers-1") == [guard, check[2], lb, f"{K}-retire-{C}-workers-1"]
    assert deps(run, "drain", "workers-2") == [guard, check[3], lb, f"{K}-retire-{C}-workers-2"]
    assert deps(run, "drain", "workers-3") == [guard, check[3], lb, f"{K}-retire-{C}-workers-3"]
    assert deps(run, "drain", "workers-4") == [guard, check[4], lb, f"{K}-retire-{C}-workers-4"]
    assert deps(run, "drain", "workers-5") == [guard, check[4], lb, f"{K}-retire-{C}-workers-5"]
    assert [run.named(c).depends_on for c in check] == [
        *([f"{K}-ready-{C}-{s}"] for s in SERVERS), [ready[0]], [barrier(4)], [barrier(5)]
    ]
    assert run.named(barrier(4)).depends_on == ready[1:3]
    assert run.named(barrier(5)).depends_on == ready[3:5]
    assert [r.name for r in run.resources if r.name.startswith(f"{K}-batch-")] == [barrier(4), barrier(5)]
    # A barrier runs nothing on any run: no inputs that could change.
    assert run.named(barrier(4)).type == "command:local:Command" and run.named(barrier(4)).inputs == {}
    # Removal goes in two lanes (the batch size): worker 5 before 3 before 1, worker 4 before 2.
    assert [deps(run, "retire", f"workers-{i}")[1:] for i in range(1, 6)] == [
        [], [], [f"{K}-retire-{C}-workers-1"], [f"{K}-retire-{C}-workers-2"], [f"{K}-retire-{C}-workers-3"]
    ]


@pytest.mark.parametrize("between_batches", [True, False])
def test_agents_upgrade_in_batches_of_a_percentage_of_the_agents(between_batches):
    pools = [{"name": "workers", "count": 20, "serverType": "cx33"}]
    off = {} if between_batches else {"verify": {"betweenBatches": False}}
    run = staging(nodePools=pools, agentUpgradeBatchSize="25%", **off)
    checks = {r.name for r in run.resources if "-rollout-check-batch-" in r.name}

    def boundary(index, wait):
        """What the next batch's drains wait for: the batch's check, or (checks off) ``wait`` itself."""
        if not between_batches:
            return wait
        check = f"{C}-rollout-check-batch-{index}"
        assert run.named(check).depends_on == [wait]
        return check

    # The canary (workers-1) alone after the three servers' batches, then 25% of 20 agents: 4 batches of 5.
    first = boundary(3, f"{K}-ready-{C}-workers-1")
    assert deps(run, "drain", "workers-1")[1:2] == [boundary(2, f"{K}-ready-{C}-cp-3")]
    previous = first
    for b in range(4):
        members = range(5 * b + 2, min(5 * b + 7, 21))
        assert run.named(barrier(4 + b)).depends_on == [f"{K}-ready-{C}-workers-{i}" for i in members]
        for i in members:
            assert deps(run, "drain", f"workers-{i}")[1:2] == [previous]
        previous = boundary(4 + b, barrier(4 + b))
    assert not any(r.name == barrier(8) for r in run.resources)
    assert checks == ({f"{C}-rollout-check-batch-{i}" for i in range(8)} if between_batches else set())


def test_label_add_and_remove_changes_only_the_node_patches(base):
    before = staging(nodePools=[{**WORKERS, "labels": {"keybuzz.io/old": "yes"}}])
    after = staging(nodePools=[{**WORKERS, "labels": {"keybuzz.io/new": "yes"}}])
    assert changed(before, after) == per_node(("labels",), *AGENTS)
    for node in AGENTS:
        patch = after.named(f"{K}-labels-{C}-{node}")
        assert patch.type == "kubernetes:core/v1:NodePatch"
        # Only the new label is applied: the API server removes the old one from our field manager.
        assert patch.inputs["metadata"]["labels"] == {"keybuzz.io/new": "yes"}
        assert patch.inputs["metadata"]["name"] == f"{C}-{node}"
        assert patch.inputs["metadata"]["annotations"]["pulumi.com/patchFieldManager"] == "keybuzz-node-labels"
        assert patch.inputs["metadata"]["annotations"]["pulumi.com/patchForce"] == "true"
        assert patch.depends_on == [f"{K}-ready-{C}-{node}", f"{K}-retire-{C}-{node}"]
        # No install trigger change: labels are not in config.yaml any more.
        config = yaml.safe_load(k3s.config_in_install_script(after.named(f"{K}-install-{C}-{node}").inputs["create"]))
        assert "node-label" not in config
    # Removing every label still applies the patch (with no labels), which removes ours.
    cleared = staging(nodePools=[WORKERS])
    assert changed(before, cleared) == per_node(("labels",), *AGENTS)
    assert not cleared.named(f"{K}-labels-{C}-workers-1").inputs["metadata"].get("labels")


def test_taint_change_reruns_only_the_taint_command(base):
    before = staging(nodePools=[{**WORKERS, "taints": ["dedicated=ci:NoSchedule"]}])
    after = staging(nodePools=[{**WORKERS, "taints": ["dedicated=ci:NoExecute"]}])
    assert changed(before, after) == per_node(("taints",), *AGENTS)
    script = after.named(f"{K}-taints-{C}-workers-1").inputs["create"]
    assert "taint node \"$NODE\" dedicated=ci:NoExecute --overwrite" in script
    assert "keybuzz.io/managed-taints=dedicated=ci:NoExecute" in script  # next run removes what is no longer here
    assert_valid_bash(script)


def test_server_type_change_drains_resizes_and_uncordons_one_node_at_a_time(base):
    resized = staging(nodePools=[{**WORKERS, "serverType": "cx43"}])
    servers = {f"{C}-{node}" for node in AGENTS}
    assert changed(base, resized) == per_node(("drain", "resize", "ready"), *AGENTS) | servers
    for node in AGENTS:
        # The server's serverType input changes but is ignored: the resize does the change, gently.
        assert differing(base, resized, f"{C}-{node}") == {"serverType"}
        resize = resized.named(f"{K}-resize-{C}-{node}")
        assert resize.inputs["serverType"] == "cx43" and resize.inputs["upgradeDisk"] is False
        assert resize.inputs["nodeName"] == f"{C}-{node}"
        server = resized.named(f"{C}-{node}")
        assert "serverType" in server.options["ignore_changes"]
    # drain -> resize -> (install, unchanged) -> ready (wait Ready, uncordon) -> next node's drain.
    assert deps(resized, "resize", "workers-1") == [f"{K}-drain-{C}-workers-1"]
    assert deps(resized, "install", "workers-1")[1:] == [f"{K}-resize-{C}-workers-1", f"{K}-retire-{C}-workers-1"]
    assert drain_waits_for(resized, "workers-2") == [f"{K}-ready-{C}-workers-1"]


def test_control_plane_type_change_resizes_servers_one_at_a_time(base):
    resized = staging(controlPlane={"count": 3, "serverType": "cx33"})
    servers = {f"{C}-{node}" for node in SERVERS}
    assert changed(base, resized) == per_node(("drain", "resize", "ready"), *SERVERS) | servers
    assert all(differing(base, resized, s) == {"serverType"} for s in servers)
    assert all("serverType" in resized.named(s).options["ignore_changes"] for s in servers)
    assert drain_waits_for(resized, "cp-2") == [f"{K}-ready-{C}-cp-1"]
    assert drain_waits_for(resized, "cp-3") == [f"{K}-ready-{C}-cp-2"]


def test_pool_grow_adds_only_the_new_nodes_resources(base):
    grown = staging(nodePools=[{**WORKERS, "count": 3}])
    assert added(base, grown) == {f"{C}-workers-3"} | per_node(
        ("drain", "resize", "install", "ready", "labels", "taints", "retire"), "workers-3"
    )
    assert not changed(base, grown) and not removed(base, grown)
    assert drain_waits_for(grown, "workers-3") == [f"{K}-ready-{C}-workers-2"]
    assert f"{K}-retire-{C}-workers-2" in deps(grown, "retire", "workers-3")


def test_pool_shrink_drains_and_deletes_the_node_before_its_server(base):
    shrunk = staging(nodePools=[{**WORKERS, "count": 1}])
    assert removed(base, shrunk) == {f"{C}-workers-2"} | per_node(
        ("drain", "resize", "install", "ready", "labels", "taints", "retire"), "workers-2"
    )
    assert not changed(base, shrunk)
    # What the engine deletes, it deletes from the before-state: the retire's delete script runs
    # first because the retire depends on the server.
    retire = base.named(f"{K}-retire-{C}-workers-2")
    assert retire.depends_on == [f"{C}-workers-2", f"{K}-retire-{C}-workers-1"]
    delete = retire.inputs["delete"]
    assert delete.index('kc_within 330 drain "$NODE"') < delete.index('kc_within 330 delete node "$NODE"')
    assert retire.options["delete_before_replace"] is True
    assert_valid_bash(delete)


def test_control_plane_3_to_5_joins_the_new_servers_after_the_existing_ones(base):
    grown = staging(controlPlane={"count": 5, "serverType": "cx23"})
    new = ("cp-4", "cp-5")
    assert added(base, grown) == {f"{C}-{n}" for n in new} | per_node(
        ("drain", "resize", "install", "ready", "labels", "taints", "retire"), *new
    )
    # Existing nodes are untouched (the first server's bootstrap peers cover every possible server).
    assert not changed(base, grown) and not removed(base, grown)
    assert drain_waits_for(grown, "cp-4") == [f"{K}-ready-{C}-cp-3"]
    assert drain_waits_for(grown, "cp-5") == [f"{K}-ready-{C}-cp-4"]
    assert drain_waits_for(grown, "workers-1") == [f"{K}-ready-{C}-cp-5"]  # agents after the last server
    for node in new:
        config = yaml.safe_load(k3s.config_in_install_script(grown.named(f"{K}-install-{C}-{node}").inputs["create"]))
        assert config["server"] == "https://10.0.1.5:6443" and "cluster-init" not in config


def retire_chain(run, servers):
    return {n: run.named(f"{K}-retire-{C}-{n}").depends_on for n in servers}


def test_control_plane_5_to_3_removes_one_etcd_member_at_a_time():
    five = staging(controlPlane={"count": 5, "serverType": "cx23"})
    three = staging(controlPlane={"count": 3, "serverType": "cx23"})
    assert removed(five, three) == {f"{C}-cp-4", f"{C}-cp-5"} | per_node(
        ("drain", "resize", "install", "ready", "labels", "taints", "retire"), "cp-4", "cp-5"
    )
    assert not changed(five, three)
    # cp-5's retire depends on cp-4's: the engine deletes cp-5's first (drain, Node, etcd member gone),
    # then cp-4's; each depends on its server, which is deleted after it.
    assert retire_chain(five, ("cp-4", "cp-5")) == {
        "cp-4": [f"{C}-cp-4", f"{K}-retire-{C}-cp-3"],
        "cp-5": [f"{C}-cp-5", f"{K}-retire-{C}-cp-4"],
    }
    for node, ip in (("cp-4", "10.0.1.13"), ("cp-5", "10.0.1.14")):
        delete = five.named(f"{K}-retire-{C}-{node}").inputs["delete"]
        assert f"*https://{ip}:2380*) false ;;" in delete  # waits until the member list no longer has it
        assert_valid_bash(delete)


def test_control_plane_3_to_1_removes_two_members_in_turn_and_moves_joins_to_the_first_server(base):
    one = staging(controlPlane={"count": 1, "serverType": "cx23"})
    assert {f"{C}-cp-2", f"{C}-cp-3", f"{K}-retire-{C}-cp-2", f"{K}-retire-{C}-cp-3"} <= removed(base, one)
    assert retire_chain(base, ("cp-2", "cp-3")) == {
        "cp-2": [f"{C}-cp-2", f"{K}-retire-{C}-cp-1"],
        "cp-3": [f"{C}-cp-3", f"{K}-retire-{C}-cp-2"],
    }
    # The load balancer goes (auto: one server), so the remaining nodes now join through cp-1:
    # a config change, rolled out node by node like any other.
    assert changed(base, one) >= per_node(("drain", "install", "ready"), "cp-1", *AGENTS)
    config = yaml.safe_load(k3s.config_in_install_script(one.named(f"{K}-install-{C}-workers-1").inputs["create"]))
    assert config["server"] == "https://10.0.1.10:6443"
    # cp-1 is never retired by a shrink: its retire stays, now as "the only server, nothing to do".
    retire = one.named(f"{K}-retire-{C}-cp-1")
    assert "nothing to remove it from" in retire.inputs["delete"] and "kubectl" not in retire.inputs["delete"]


def test_a_replaced_first_server_joins_the_running_cluster(base):
    script = base.named(f"{K}-install-{C}-cp-1").inputs["create"]
    config = yaml.safe_load(k3s.config_in_install_script(script))
    assert config["server"] == "https://10.0.1.5:6443" and "cluster-init" not in config
    # Replacing its server replaces its retire first (triggers on the server id, delete before
    # replace): the old Node and etcd member go before the new machine joins under the same name.
    retire = base.named(f"{K}-retire-{C}-cp-1")
    assert retire.inputs["triggers"] == [base.named(f"{K}-resize-{C}-cp-1").inputs["serverId"]]  # cp-1's id
    assert retire.options["delete_before_replace"] is True
    assert retire.depends_on == [f"{C}-cp-1"]
    assert secret_value(retire.inputs["connection"])["host"] == "203.0.113.11"  # runs on cp-2 (10.0.1.11)...
    assert "NODE=keybuzz-staging-cp-1" in retire.inputs["delete"]  # ...and removes cp-1


ORIGIN = f"{K}-cluster-origin"


def cp1_id(run):
    return run.named(f"{K}-resize-{C}-cp-1").inputs["serverId"]


def test_only_the_server_that_created_the_cluster_may_initialise_it(base):
    origin = base.named(ORIGIN)
    assert origin.inputs["serverId"] == cp1_id(base)
    assert origin.options["ignore_changes"] == ["serverId"]  # the recorded id never follows a new server
    script = base.named(f"{K}-install-{C}-cp-1").inputs["create"]
    assert k3s.bootstrap_config_in_install_script(script) is not None
    bootstrap = yaml.safe_load(k3s.bootstrap_config_in_install_script(script))
    assert bootstrap["cluster-init"] is True and "server" not in bootstrap
    assert f"if [ -d {k3s.ETCD_WAL_DIR} ] &&" in script and "/ping" not in script
    assert_valid_bash(script)
    for node in ("cp-2", "cp-3", "workers-1"):
        assert "cluster-init" not in base.named(f"{K}-install-{C}-{node}").inputs["create"]


def test_a_replaced_first_server_never_initialises_and_joins_through_the_load_balancer(base):
    # State holds the id of the server that created the cluster; cp-1 is now another machine.
    replaced = staging_with_origin("99")
    script = replaced.named(f"{K}-install-{C}-cp-1").inputs["create"]
    assert "cluster-init" not in script and k3s.bootstrap_config_in_install_script(script) is None
    assert yaml.safe_load(k3s.config_in_install_script(script))["server"] == "https://10.0.1.5:6443"
    assert "never initialises a new cluster" in script
    assert_valid_bash(script)
    # Nothing else differs from a stack whose cp-1 created the cluster: no other node is touched.
    assert changed(base, replaced) == {f"{K}-install-{C}-cp-1"}


def test_a_replaced_first_server_without_load_balancer_joins_through_the_second_server():
    run = staging_with_origin("99", apiLoadBalancer={"mode": "off"})
    config = yaml.safe_load(k3s.config_in_install_script(run.named(f"{K}-install-{C}-cp-1").inputs["create"]))
    assert config["server"] == "https://10.0.1.11:6443"  # not its own address: there is nothing there to join
    alone = staging_with_origin("99", controlPlane={"count": 1, "serverType": "cx23"})
    script = alone.named(f"{K}-install-{C}-cp-1").inputs["create"]
    assert "there is no cluster left to join, and a replacement never initialises one" in script
    assert "cluster-init" not in script


def staging_with_origin(origin_id, **overrides):
    return run_program(
        "staging",
        overrides={f"{P}:{key}": value for key, value in overrides.items()},
        recorded_outputs={ORIGIN: {"serverId": origin_id}},
    )


def test_an_existing_stack_records_its_first_server_and_nothing_restarts_or_initialises(tmp_path, base):
    """A stack deployed before the origin record: its first up records today's cp-1; the second changes nothing."""
    first_up = base
    second_up = staging_with_origin(cp1_id(first_up))
    assert first_up.named(ORIGIN).inputs["serverId"] == cp1_id(first_up)
    assert not changed(first_up, second_up)
    # cp-1 of that stack runs with etcd data and the joining config an earlier program wrote, no marker:
    # its new install script keeps the config and does not force a restart.
    script = second_up.named(f"{K}-install-{C}-cp-1").inputs["create"]
    bin_dir, state = make_stubs(tmp_path)
    root = tmp_path / "root"
    joining = k3s.config_in_install_script(script).replace("/etc/rancher", f"{root}/etc/rancher")
    (root / k3s.ETCD_WAL_DIR.lstrip("/")).mkdir(parents=True)
    (root / "etc/rancher/k3s").mkdir(parents=True)
    (root / "etc/rancher/k3s/config.yaml").write_text(joining)
    (state / "active").write_text("")
    done = run_script(script.replace("install -d -m 0755", "mkdir -p"), bin_dir, stdin="token", root=root)
    assert done.returncode == 0, done.stderr
    assert (root / "etc/rancher/k3s/config.yaml").read_text() == joining
    assert (state / "installs").read_text().startswith("force_restart=false ")
    assert "initialising" not in done.stderr


def test_a_config_change_retried_after_a_failed_start_restarts_k3s(tmp_path):
    before = staging(nodePools=[WORKERS])
    after = staging(nodePools=[WORKERS], apiLoadBalancer={"mode": "off"})  # agents now join through cp-1
    node = "workers-1"
    old, new = (run.named(f"{K}-install-{C}-{node}").inputs["create"] for run in (before, after))
    assert old != new and "workers-1" in old
    bin_dir, state = make_stubs(tmp_path)
    root = tmp_path / "root"
    (root / "etc/rancher/k3s").mkdir(parents=True)

    def install(script):
        return run_script(script.replace("install -d -m 0755", "mkdir -p"), bin_dir, stdin="token", root=root)

    assert install(old).returncode == 0
    (state / "start_fails").write_text("")
    assert install(new).returncode == 1  # config.yaml written, K3s did not start with it
    (state / "start_fails").unlink()
    (state / "active").write_text("")
    assert install(new).returncode == 0
    assert (state / "installs").read_text().splitlines()[-1].startswith("force_restart=true ")


def test_a_dead_worker_removed_does_not_wait_for_its_pods(base):
    shrunk = staging(nodePools=[{**WORKERS, "count": 1}])
    assert f"{K}-retire-{C}-workers-2" in removed(base, shrunk)
    delete = base.named(f"{K}-retire-{C}-workers-2").inputs["delete"]
    assert "--skip-wait-for-delete-timeout=60 --disable-eviction --force --timeout=300s" in delete
    assert 'if [ "$ready" = Unknown ]; then' in delete
    assert_valid_bash(delete)


def test_control_plane_3_to_1_reads_the_member_list_the_way_k3s_v1_34_serves_it(base):
    one = staging(controlPlane={"count": 1, "serverType": "cx23"})
    for node, ip in (("cp-2", "10.0.1.11"), ("cp-3", "10.0.1.12")):
        assert f"{K}-retire-{C}-{node}" in removed(base, one)
        delete = base.named(f"{K}-retire-{C}-{node}").inputs["delete"]
        assert "https://127.0.0.1:2382/v3/cluster/member/list" in delete and "2379" not in delete
        tls = "/var/lib/rancher/k3s/server/tls/etcd"
        assert f"--cacert {tls}/server-ca.crt --cert {tls}/client.crt --key {tls}/client.key" in delete
        assert f"etcd member https://{ip}:2380 gone" in delete
        assert_valid_bash(delete)


def test_cp1_down_during_a_workers_upgrade_another_server_runs_the_drain(tmp_path):
    """"Down" here: cp-1's K3s does not answer /readyz, nor does the LB (no healthy target behind it yet);
    cp-1's machine still answers SSH, so the command runs there and its kubectl goes to cp-3's API.
    (A machine that refuses SSH stops the command itself: a remote Command has one host.)"""
    resized = staging(nodePools=[{**WORKERS, "serverType": "cx43"}])
    drain = resized.named(f"{K}-drain-{C}-workers-1")
    assert secret_value(drain.inputs["connection"])["host"] == "203.0.113.10"  # connected to cp-1...
    bin_dir, state = make_stubs(tmp_path)
    (state / "ready_apis").write_text("10.0.1.12")  # ...whose K3s is down, as is the LB's: cp-3 answers
    (state / "registered").write_text(f"{C}-workers-1")
    done = run_script(drain.inputs["update"], bin_dir)
    assert done.returncode == 0, done.stderr
    assert [c.split(" ")[:2] for c in kubectl_calls(state)][-2:] == [["10.0.1.12", "cordon"], ["10.0.1.12", "drain"]]
    # ...and so do the wait for Ready and the uncordon after the resize.
    (state / "kubectl").unlink()
    done = run_script(resized.named(f"{K}-ready-{C}-workers-1").inputs["update"], bin_dir)
    assert done.returncode == 0, done.stderr
    assert {c.split(" ")[0] for c in kubectl_calls(state)} == {"10.0.1.12"}


def test_a_replaced_server_is_installed_waited_for_labelled_and_tainted_again(base):
    # A replaced server keeps its name and private IP; only its Hetzner id is sure to change, so every
    # per-node step that must run again on the new machine carries it.
    for node in ("cp-2", "workers-1"):
        server_id = base.named(f"{K}-resize-{C}-{node}").inputs["serverId"]
        assert f"# keybuzz: hetzner server id {server_id}\n" in base.named(f"{K}-install-{C}-{node}").inputs["create"]
        assert base.named(f"{K}-taints-{C}-{node}").inputs["triggers"] == [server_id]
        labels = base.named(f"{K}-labels-{C}-{node}").inputs["metadata"]["annotations"]
        assert labels["keybuzz.io/server-id"] == server_id
        assert base.named(f"{K}-retire-{C}-{node}").inputs["triggers"] == [server_id]
    # ...and so does the rollout fingerprint in drain and ready (version, config, type, server id).
    from keybuzz.config import project_defaults

    server_id = base.named(f"{K}-resize-{C}-cp-2").inputs["serverId"]
    config = k3s.config_in_install_script(base.named(f"{K}-install-{C}-cp-2").inputs["create"])
    expected = k3s.content_hash(project_defaults()["k3sVersion"], config, "cx23", server_id)
    for step in ("drain", "ready"):
        assert f"# keybuzz rollout fingerprint: {expected}\n" in base.named(f"{K}-{step}-{C}-cp-2").inputs["update"]
