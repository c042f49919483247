"""The cluster program under the mock engine, for each committed stack file as the CLI would load it."""

from __future__ import annotations

import ipaddress

import pytest
import yaml
from harness import STACK_FIXTURES, STACKS, run_program, secret_value

from keybuzz import k3s

SERVER = "hcloud:index/server:Server"
COMMAND = "command:remote:Command"

EXPECTED_SHAPE = {
    # stack: (control-plane count, worker count, control-plane type, worker type)
    "dev": (1, 1, "cx23", "cx23"),
    "staging": (3, 2, "cx23", "cx33"),
    "prod": (3, 3, "cx33", "cx43"),
}


@pytest.fixture(scope="module", params=STACKS)
def run(request):
    return run_program(request.param, probe=lambda built: {"token": built.k3s.token})


def servers_by_role(run, role):
    """Servers of one role in node order (the mock engine registers them in any order)."""
    return sorted((r for r in run.of_type(SERVER) if r.inputs["labels"]["role"] == role), key=lambda r: r.name)


def rendered_config(run, node_name):
    """The config.yaml text inside a node's install command (between the heredoc markers)."""
    create = run.named(f"{cluster(run)}-k3s-install-{node_name}").inputs["create"]
    return yaml.safe_load(k3s.config_in_install_script(create))


def install_of(run, node_name):
    return run.named(f"{cluster(run)}-k3s-install-{node_name}").inputs["create"]


def cluster(run):
    return f"keybuzz-{run.stack}"


def test_server_counts_and_types_match_the_stack(run):
    cp, workers, cp_type, worker_type = EXPECTED_SHAPE[run.stack]
    assert [s.inputs["serverType"] for s in servers_by_role(run, "server")] == [cp_type] * cp
    assert [s.inputs["serverType"] for s in servers_by_role(run, "agent")] == [worker_type] * workers


def test_prod_has_at_least_three_workers():
    prod = run_program("prod")
    assert len(servers_by_role(prod, "agent")) >= 3
    assert len(servers_by_role(prod, "server")) == 3


def test_private_ips_are_unique_and_inside_the_subnet(run):
    subnet = ipaddress.ip_network("10.0.1.0/24")
    ips = [s.inputs["networks"][0]["ip"] for s in run.of_type(SERVER)]
    assert all(s.inputs["networks"][0]["aliasIps"] == [] for s in run.of_type(SERVER))
    assert len(set(ips)) == len(ips)
    for ip in ips:
        address = ipaddress.ip_address(ip)
        assert address in subnet and address not in (subnet.network_address, subnet.network_address + 1)


def test_every_server_is_behind_the_firewall_and_on_the_network_from_creation(run):
    for server in run.of_type(SERVER):
        assert server.inputs["firewallIds"], server.name
        assert f"{cluster(run)}-subnet" in server.depends_on


def test_network_zone_is_derived_from_the_location(run):
    subnet = run.of_type("hcloud:index/networkSubnet:NetworkSubnet")[0]
    assert subnet.inputs["networkZone"] == "eu-central"
    assert subnet.inputs["ipRange"] == "10.0.1.0/24"
    assert run.of_type("hcloud:index/network:Network")[0].inputs["ipRange"] == "10.0.0.0/16"


def test_firewall_rules_are_exactly_admin_ports_web_and_icmp(run):
    (firewall,) = run.of_type("hcloud:index/firewall:Firewall")
    rules = {(r["protocol"], r.get("port")): r["sourceIps"] for r in firewall.inputs["rules"]}
    world = ["0.0.0.0/0", "::/0"]
    assert rules == {
        ("tcp", "22"): ["198.51.100.0/24"],
        ("tcp", "6443"): ["198.51.100.0/24"],
        ("tcp", "80"): world,
        ("tcp", "443"): world,
        ("icmp", None): world,
    }
    assert all(r["direction"] == "in" for r in firewall.inputs["rules"])


def test_no_firewall_rule_mentions_vxlan_or_udp(run):
    (firewall,) = run.of_type("hcloud:index/firewall:Firewall")
    assert not [r for r in firewall.inputs["rules"] if r["protocol"] == "udp"]
    assert "8472" not in str(firewall.inputs)


JOIN_IP = {"dev": "10.0.1.10", "staging": "10.0.1.5", "prod": "10.0.1.5"}  # first server, or the API LB


def test_servers_run_flannel_off_and_bind_to_private_ips(run):
    first = servers_by_role(run, "server")[0]
    for server in servers_by_role(run, "server"):
        config = rendered_config(run, server.name)
        assert config["flannel-backend"] == "none"
        assert config["disable-network-policy"] is True
        assert config["cluster-cidr"] == "10.42.0.0/16" and config["service-cidr"] == "10.43.0.0/16"
        assert config["node-ip"] == config["advertise-address"] == server.inputs["networks"][0]["ip"]
        assert config["disable"] == ["traefik", "servicelb"]
        assert config["tls-san"][0].startswith("203.0.113.")
        assert config["node-external-ip"] == config["tls-san"][0]
        # Every server, the first included, joins through the join address; none initialises etcd.
        assert config["server"] == f"https://{JOIN_IP[run.stack]}:6443"
        assert "cluster-init" not in config
        bootstrap = k3s.bootstrap_config_in_install_script(install_of(run, server.name))
        if server is first:
            without_server = {k: v for k, v in config.items() if k != "server"}
            assert yaml.safe_load(bootstrap) == {**without_server, "cluster-init": True}
        else:
            assert bootstrap is None


def test_tls_san_names_the_api_load_balancer_when_there_is_one(run):
    for server in servers_by_role(run, "server"):
        sans = rendered_config(run, server.name)["tls-san"]
        if run.stack == "dev":
            assert sans == [sans[0], server.inputs["networks"][0]["ip"]]
        else:
            assert sans == [sans[0], server.inputs["networks"][0]["ip"], "10.0.1.5"]


def test_agents_join_through_the_join_address_without_registration_metadata(run):
    for agent in servers_by_role(run, "agent"):
        config = rendered_config(run, agent.name)
        assert config["server"] == f"https://{JOIN_IP[run.stack]}:6443"
        assert config["node-ip"] == agent.inputs["networks"][0]["ip"]
        assert config["node-external-ip"].startswith("203.0.113.")
        assert not {"cluster-init", "node-label", "node-taint"} & set(config)


def test_servers_roll_one_at_a_time_and_agents_after_the_last_server(run):
    name = cluster(run)
    servers = [s.name for s in servers_by_role(run, "server")]
    agents = [s.name for s in servers_by_role(run, "agent")]
    guard = f"{name}-k3s-critical-config"
    chain = [*servers, *agents]  # batch size 1 in every committed stack
    # Each drain also waits for its node's retire step (a replaced server's old Node goes first).
    assert run.named(f"{name}-k3s-drain-{servers[0]}").depends_on == [guard, f"{name}-k3s-retire-{servers[0]}"]
    # Joining nodes also wait for the API load balancer they join through (staging, prod).
    lb = [] if run.stack == "dev" else [f"{name}-api-lb"]
    # ... and for the overlay check of the previous node's batch (verify.betweenBatches, on by default),
    # which waits for that node's ready (a batch of one needs no barrier: no k3s-batch-<n> resource).
    for batch, (previous, current) in enumerate(zip(chain, chain[1:], strict=False)):
        check = f"{name}-rollout-check-batch-{batch}"
        assert run.named(f"{name}-k3s-drain-{current}").depends_on == [
            guard, check, *lb, f"{name}-k3s-retire-{current}"
        ]
        assert run.named(check).depends_on == [f"{name}-k3s-ready-{previous}"]
    assert not [r.name for r in run.resources if r.name.startswith(f"{name}-k3s-batch-")]
    for node in chain:
        assert run.named(f"{name}-k3s-resize-{node}").depends_on == [f"{name}-k3s-drain-{node}"]
        assert run.named(f"{name}-k3s-install-{node}").depends_on == [
            node, f"{name}-k3s-resize-{node}", f"{name}-k3s-retire-{node}"
        ]
        assert run.named(f"{name}-k3s-ready-{node}").depends_on == [f"{name}-k3s-install-{node}"]


def test_install_commands_update_in_place_and_differ_per_node(run):
    installs = [c for c in run.of_type(COMMAND) if "-k3s-install-" in c.name]
    assert all("triggers" not in c.inputs and "update" not in c.inputs for c in installs)
    assert len({c.inputs["create"] for c in installs}) == len(installs)  # node-ip differs, so does the script


def test_the_token_reaches_nodes_on_stdin_only(run):
    for command in run.of_type(COMMAND):
        assert "x" * 48 not in command.inputs.get("create", "")
    installs = [c for c in run.of_type(COMMAND) if "-k3s-install-" in c.name]
    assert [secret_value(c.inputs["stdin"]) for c in installs] == ["x" * 48] * len(installs)


def test_kubeconfig_and_token_are_secret(run):
    assert {"kubeconfig", "token"} <= run.secret_outputs
    assert "127.0.0.1" not in run.outputs["kubeconfig"]
    assert yaml.safe_load(run.outputs["kubeconfig"])["current-context"] == cluster(run)
    kubeconfig_read = run.named(f"{cluster(run)}-k3s-kubeconfig")
    assert kubeconfig_read.inputs["logging"] == "none"
    # The previous stdout (the admin key) is never re-sent through the SSH environment.
    assert kubeconfig_read.inputs["addPreviousOutputInEnv"] is False


def test_the_kubernetes_provider_is_built_from_the_kubeconfig_after_the_api_answers(run):
    (provider,) = run.of_type("pulumi:providers:kubernetes")
    assert secret_value(provider.inputs["kubeconfig"]) == run.outputs["kubeconfig"]
    first = servers_by_role(run, "server")[0].name
    assert provider.depends_on == [f"{cluster(run)}-k3s-ready-{first}"]


@pytest.mark.parametrize("stack", STACKS)
def test_first_preview_of_a_new_stack_succeeds_with_unknown_ips(stack):
    preview = run_program(stack, preview=True)
    assert len(preview.of_type(SERVER)) == sum(EXPECTED_SHAPE[stack][:2])
    assert "kubeconfig" in preview.unknown_outputs and "kubeconfig" in preview.secret_outputs


def test_a_bad_stack_value_fails_before_any_resource_is_declared():
    from keybuzz.config import ConfigError

    with pytest.raises(ConfigError) as caught:
        run_program("dev", overrides={"keybuzz-k3s:controlPlane": {"count": 2, "serverType": "cx23"}})
    assert caught.value.key == "controlPlane.count"


def test_secure_values_in_a_stack_file_are_loaded_as_secrets():
    doc = yaml.safe_load((STACK_FIXTURES / "Pulumi.dev.yaml").read_text())
    doc["config"]["keybuzz-k3s:sshPrivateKey"] = {"secure": "v1:AAAA"}
    dev = run_program("dev", stack_doc=doc)
    install = next(c for c in dev.of_type(COMMAND) if "-k3s-install-" in c.name)
    assert secret_value(install.inputs["connection"])["privateKey"] == "mock-secret-value"


def test_a_private_key_set_in_plain_text_is_refused_without_showing_it():
    from keybuzz.config import ConfigError

    with pytest.raises(ConfigError) as caught:
        run_program("dev", overrides={"keybuzz-k3s:sshPrivateKey": "-----BEGIN OPENSSH PRIVATE KEY-----"})
    assert caught.value.key == "sshPrivateKey"
    assert "BEGIN" not in str(caught.value) and "--secret" in str(caught.value)
    # The remedy names bin/deploy (which refuses a plain `config set` of it), not raw pulumi.
    assert "bin/deploy dev config rm sshPrivateKey, then bin/deploy dev config set --secret sshPrivateKey" in str(
        caught.value
    )
    assert "pulumi config" not in str(caught.value)


def test_without_a_private_key_pulumi_uses_the_ssh_agent():
    dev = run_program("dev")
    install = next(c for c in dev.of_type(COMMAND) if "-k3s-install-" in c.name)
    connection = secret_value(install.inputs["connection"])  # pulumi-command always marks it secret
    assert "privateKey" not in connection
    assert connection["user"] == "root" and connection["host"].startswith("203.0.113.")


def test_resource_options_are_recorded_for_day2_tests():
    dev = run_program("dev")
    kubeconfig_read = dev.named("keybuzz-dev-k3s-kubeconfig")
    assert "stdout" in kubeconfig_read.options["additional_secret_outputs"]
    assert not kubeconfig_read.options["protect"]
