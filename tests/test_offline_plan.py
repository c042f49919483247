"""The offline plan a pull request runs: readable, policy-checked, no cloud, no CLI, no network."""

from __future__ import annotations

import functools
import io
import json
import re
import subprocess

import pytest
import yaml
from harness import REPO, STACK_FIXTURES, STACKS, TEST_SSH_KEY, run_program

from keybuzz.offline_plan import EXIT_CONFIG, EXIT_OK, EXIT_POLICY, main, rollout_order


def plan(*argv):
    out = io.StringIO()
    code = main(list(argv), out)
    return code, out.getvalue()


@functools.cache
def committed_plan(stack):
    """The plan of a committed stack file, computed once per module: each costs a mock-engine run and
    the policy pack (seconds on a loaded machine), and several tests read the same one."""
    return plan(stack)


@pytest.mark.parametrize("stack", STACKS)
def test_plan_prints_servers_firewall_k3s_calico_and_checks(stack):
    code, text = committed_plan(stack)
    assert code == EXIT_OK, text
    assert f"offline plan for stack '{stack}'" in text
    assert re.search(rf"keybuzz-{stack}-cp-1 +server +control-plane +cx\d+ +10\.0\.1\.10\n", text)
    assert "10.0.1.10" in text and "10.0.1.20" in text
    assert "in  tcp   6443  from 198.51.100.0/24" in text
    assert "udp" not in text.split("Firewall", 1)[1].split("K3s config", 1)[0]
    assert "flannel-backend: none" in text and "cluster-init: true" in text
    assert "pool default-ipv4-ippool: 10.42.0.0/16 encapsulation IPIP, block /26" in text
    assert "MTU 1430" in text
    assert "Checks run on every `pulumi up` (7;" in text and "PodMeshCheck" in text
    assert "0 mandatory violation(s)" in text


def test_plan_names_the_placeholders_it_used_and_only_those(tmp_path):
    _, text = committed_plan("dev")
    assert "values it lacks are placeholders: sshPublicKeys, adminCidrs" in text
    doc = yaml.safe_load((STACK_FIXTURES / "Pulumi.dev.yaml").read_text())
    doc["config"]["keybuzz-k3s:adminCidrs"] = ["192.0.2.7/32"]
    doc["config"]["keybuzz-k3s:sshPublicKeys"] = [TEST_SSH_KEY]
    (tmp_path / "Pulumi.dev.yaml").write_text(yaml.safe_dump(doc))
    code, text = plan("dev", "--stack-file", str(tmp_path / "Pulumi.dev.yaml"))
    assert code == EXIT_OK, text
    assert "placeholder" not in text.split("public IPs below", 1)[0]
    assert "  config: Pulumi.yaml defaults + the stack file\n" in text
    assert "from 192.0.2.7/32" in text


def test_a_dirty_tree_is_one_plan_line_not_the_ups_withheld_warning(monkeypatch, caplog):
    from keybuzz import offline, offline_plan
    from keybuzz.promotion import Commit

    caplog.set_level("WARNING")
    dirty = Commit("0123456789abcdef", dirty=True)
    monkeypatch.setattr(offline_plan, "read_commit", lambda _repo: dirty)
    monkeypatch.setattr(offline, "read_commit", lambda _repo: dirty)  # the program's own view of its source
    run_program("dev")  # the program alone warns, as an `up` would ...
    assert any("VERIFIEDCOMMIT WITHHELD" in r.getMessage() for r in caplog.records)
    caplog.clear()
    code, text = plan("dev")  # ... the plan says it once, in its own words
    assert code == EXIT_OK
    assert text.startswith("keybuzz-k3s offline plan for stack 'dev' (commit 0123456789ab, dirty)\n")
    assert "uncommitted changes: nothing is deployed by a plan, but an `up` of this tree would withhold " \
        "verifiedCommit" in text
    assert not any("VERIFIEDCOMMIT WITHHELD" in r.getMessage() for r in caplog.records)


def test_plan_prints_the_rollout_order_servers_first_then_agent_batches():
    _, text = committed_plan("staging")
    names = " -> check -> ".join(f"keybuzz-staging-{n}" for n in ("cp-1", "cp-2", "cp-3", "workers-1", "workers-2"))
    heading = "Rollout order (day 2: each node drained, changed, Ready and uncordoned before the next)"
    assert f"{heading}\n  {names} -> check\n" in text
    assert "  check = the overlay checks focused on the batch just rolled (5 in all, verify.betweenBatches): at " \
           "most 60 s + 10 s each" in text
    assert "barrier" not in text  # batches of one node need none
    pools = [{"name": "workers", "count": 3, "serverType": "cx33"}]
    run = run_program("staging", overrides={"keybuzz-k3s:agentUpgradeBatchSize": 2, "keybuzz-k3s:nodePools": pools})
    # The canary alone, then a batch of two (read back through its barrier and its check).
    assert rollout_order(run)[-2:] == [["keybuzz-staging-workers-1"], ["keybuzz-staging-workers-2",
                                                                        "keybuzz-staging-workers-3"]]


def test_plan_shows_the_barrier_and_the_check_after_a_batch_of_several_nodes(tmp_path):
    doc = yaml.safe_load((STACK_FIXTURES / "Pulumi.staging.yaml").read_text())
    doc["config"]["keybuzz-k3s:agentUpgradeBatchSize"] = "50%"
    doc["config"]["keybuzz-k3s:nodePools"] = [{"name": "workers", "count": 5, "serverType": "cx33"}]
    stack_file = tmp_path / "Pulumi.staging.yaml"
    stack_file.write_text(yaml.safe_dump(doc))
    code, text = plan("staging", "--stack-file", str(stack_file))
    assert code == EXIT_OK, text
    # 50% of 5 agents: 2 a batch, after the canary.
    order = " -> check -> ".join(f"keybuzz-staging-{n}" for n in ("cp-1", "cp-2", "cp-3", "workers-1"))
    batches = " -> barrier -> check -> ".join(
        f"[keybuzz-staging-workers-{a}, keybuzz-staging-workers-{b}]" for a, b in ((2, 3), (4, 5))
    )
    assert f"  {order} -> check -> {batches} -> barrier -> check\n" in text
    assert "  barrier = <cluster>-k3s-batch-<n> (2 in all): runs nothing, waits for every node of its batch" in text
    assert "(6 in all, verify.betweenBatches)" in text


def test_plan_shows_no_check_between_batches_when_turned_off(tmp_path):
    doc = yaml.safe_load((STACK_FIXTURES / "Pulumi.staging.yaml").read_text())
    doc["config"]["keybuzz-k3s:verify"] = {"betweenBatches": False}
    stack_file = tmp_path / "Pulumi.staging.yaml"
    stack_file.write_text(yaml.safe_dump(doc))
    code, text = plan("staging", "--stack-file", str(stack_file))
    assert code == EXIT_OK, text
    names = " -> ".join(f"keybuzz-staging-{n}" for n in ("cp-1", "cp-2", "cp-3", "workers-1", "workers-2"))
    assert f"  {names}\n  no overlay check between batches (verify.betweenBatches or verify.enabled is false)\n" \
        in text


def test_plan_names_the_promotion_gate_of_a_gated_stack():
    _, text = committed_plan("prod")
    assert "preview refuses unless stack 'staging' exports verifiedCommit == this commit" in text
    _, text = committed_plan("dev")
    assert "Promotion gate: none" in text


def test_a_stack_file_that_violates_a_policy_fails_the_plan_with_the_policys_message(tmp_path):
    doc = yaml.safe_load((STACK_FIXTURES / "Pulumi.staging.yaml").read_text())
    doc["config"]["keybuzz-k3s:adminCidrs"] = ["0.0.0.0/0"]
    stack_file = tmp_path / "Pulumi.staging.yaml"
    stack_file.write_text(yaml.safe_dump(doc))
    policy_config = tmp_path / "policy.json"
    policy_config.write_text(json.dumps({"admin-ports-not-world": "mandatory"}))

    code, text = plan("staging", "--stack-file", str(stack_file), "--policy-config", str(policy_config))
    assert code == EXIT_POLICY
    assert "[mandatory] admin-ports-not-world: keybuzz-staging-firewall" in text
    assert "0.0.0.0/0" in text


def test_with_the_packs_defaults_a_world_open_admin_port_is_only_advisory(tmp_path):
    doc = yaml.safe_load((STACK_FIXTURES / "Pulumi.dev.yaml").read_text())
    doc["config"]["keybuzz-k3s:adminCidrs"] = ["0.0.0.0/0"]
    stack_file = tmp_path / "Pulumi.dev.yaml"
    stack_file.write_text(yaml.safe_dump(doc))
    code, text = plan("dev", "--stack-file", str(stack_file))
    assert code == EXIT_OK
    assert "[advisory] admin-ports-not-world" in text


def test_a_config_error_fails_the_plan_naming_key_and_value(tmp_path):
    doc = yaml.safe_load((STACK_FIXTURES / "Pulumi.prod.yaml").read_text())
    doc["config"]["keybuzz-k3s:controlPlane"] = {"count": 2, "serverType": "cx33"}
    stack_file = tmp_path / "Pulumi.prod.yaml"
    stack_file.write_text(yaml.safe_dump(doc))
    code, text = plan("prod", "--stack-file", str(stack_file))
    assert code == EXIT_CONFIG
    assert "config 'keybuzz-k3s:controlPlane.count' = 2 is invalid" in text


def test_a_missing_stack_file_is_a_config_error():
    code, text = plan("qa")
    assert code == EXIT_CONFIG and "no stack file" in text


def test_bin_plan_runs_from_a_shell_with_no_cloud_credentials():
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}
    done = subprocess.run(
        [str(REPO / "bin" / "plan"), "dev"], cwd="/", capture_output=True, text=True, timeout=300, env=env
    )
    assert done.returncode == 0, done.stderr
    assert "offline plan for stack 'dev'" in done.stdout


def test_plan_shows_the_api_load_balancer_protection_and_what_preview_refuses():
    _, prod = committed_plan("prod")
    assert "API load balancer keybuzz-prod-api (lb11, nbg1): private 10.0.1.5, public interface off" in prod
    assert "tcp 6443 to 3 server(s) by private IP" in prod
    assert "Deletion protection: on for Firewall, LoadBalancer, Network, NetworkSubnet, RandomPassword, Server" in prod
    assert "Preview refuses: a change of image (ubuntu-24.04) or location (nbg1)" in prod


def test_dev_has_no_api_load_balancer_and_no_deletion_protection():
    _, dev = committed_plan("dev")
    assert "API load balancer" not in dev
    assert "Deletion protection: off" in dev
