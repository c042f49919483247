"""The edge controller in the whole program: ingress-nginx unchanged, Traefik for new stacks, the switch order."""

from __future__ import annotations

import copy
import io
import json

import pytest
import yaml
from harness import REPO, STACK_FIXTURES, STACKS, run_program
from test_config import error_for

from keybuzz import ingress, traefik
from keybuzz.config import ConfigError, parse_config, project_defaults
from keybuzz.ingress_guard import EdgeGuardProvider
from keybuzz.offline_plan import EXIT_OK, main
from tests.policy.helpers import violations_for

RELEASE = "kubernetes:helm.sh/v3:Release"
INGRESS_CLASS = "kubernetes:networking.k8s.io/v1:IngressClass"
GUARD = "pulumi-python:dynamic:Resource"
COMMAND = "command:remote:Command"
BEFORE = json.loads((REPO / "tests" / "fixtures" / "ingress_nginx_before.json").read_text())


def stack_doc(stack: str, **ingress_cfg) -> dict:
    """The shipped stack file (fixture) with its `ingress` key replaced (none: the Pulumi.yaml default applies)."""
    doc = yaml.safe_load((STACK_FIXTURES / f"Pulumi.{stack}.yaml").read_text())
    doc["config"].pop("keybuzz-k3s:ingress", None)
    if ingress_cfg:
        doc["config"]["keybuzz-k3s:ingress"] = ingress_cfg
    return doc


def run_edge(stack: str = "dev", **ingress_cfg):
    return run_program(stack, stack_doc=stack_doc(stack, **ingress_cfg))


def sysctl_of(run):
    return [r for r in run.of_type(COMMAND) if "-edge-sysctl-" in r.name]


def releases(run) -> dict[str, dict]:
    return {r.inputs["name"]: r for r in run.of_type(RELEASE) if r.inputs["name"] in ("ingress-nginx", "traefik")}


def ingress_check(run):
    return next(r for r in run.resources if r.name.endswith("-verify-check-ingress"))


def edge_of(run) -> str:
    return next(r for r in run.of_type(GUARD) if r.name.endswith("-ingress-edge")).inputs["edge"]


# --- existing stacks: unchanged ------------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_committed_stacks_keep_ingress_nginx(stack):
    cfg = yaml.safe_load((STACK_FIXTURES / f"Pulumi.{stack}.yaml").read_text())["config"]
    assert cfg["keybuzz-k3s:ingress"] == {"controller": "ingress-nginx"}


@pytest.mark.parametrize("stack", STACKS)
def test_an_ingress_nginx_stack_declares_exactly_what_it_did_before_the_ingress_key(stack):
    # BEFORE: the same run at commit 53f8ec5, before this change (tests/fixtures/ingress_nginx_before.json).
    before = BEFORE["stacks"][stack]
    run = run_program(stack)
    after = sorted(f"{r.type} {r.name}" for r in run.resources)
    # Other changes since (day 2: drains, resizes, keys by fingerprint) are not the edge's; of the
    # edge's own records, one more: the edge guard (state only: nothing in the cluster or at Hetzner).
    ingress_before = {r for r in before["resources"] if "ingress" in r}
    ingress_after = {r for r in after if "ingress" in r}
    assert sorted(ingress_after - ingress_before) == [f"{GUARD} keybuzz-{stack}-ingress-edge"]
    assert ingress_before <= ingress_after
    for name, old in before["ingressNginx"].items():
        new = run.named(name)
        # The release now also waits for the edge guard (a dependency is not part of the release's diff).
        deps = sorted(d for d in new.depends_on if d != f"keybuzz-{stack}-ingress-edge")
        assert (new.type, new.parent, deps) == (old["type"], old["parent"], old["dependsOn"])
        assert json.loads(json.dumps(new.inputs, default=str)) == old["inputs"]
        assert {k: v for k, v in new.options.items() if v is not None} == old["options"]
    assert edge_of(run) == "ingress-nginx"


def test_a_second_up_of_an_ingress_nginx_stack_declares_the_same_ingress():
    first, second = run_program("prod"), run_program("prod")
    assert releases(first)["ingress-nginx"].inputs == releases(second)["ingress-nginx"].inputs
    assert edge_of(first) == edge_of(second) == "ingress-nginx"
    assert "traefik" not in releases(first) and not first.of_type(INGRESS_CLASS)


def test_the_ingress_check_probes_ingress_nginx_on_80_there():
    check = ingress_check(run_program("dev"))
    assert (check.inputs["ingressController"], check.inputs["ingressPort"]) == ("ingress-nginx", 80)


# --- new stacks: Traefik -------------------------------------------------------------------------


def test_a_stack_without_the_key_gets_traefik_on_80_and_443():
    run = run_edge("dev")
    assert edge_of(run) == "traefik"
    rel = releases(run)
    assert set(rel) == {"traefik"}
    release = rel["traefik"].inputs
    assert (release["chart"], release["version"], release["namespace"]) == ("traefik", "37.4.0", "traefik")
    assert release["repositoryOpts"] == {"repo": "https://traefik.github.io/charts"}
    assert release["values"] == traefik.traefik_values("v3.6.17")
    assert release["values"]["hostNetwork"] is True and release["values"]["service"] == {"type": "ClusterIP"}
    (cls,) = run.of_type(INGRESS_CLASS)
    assert cls.inputs["metadata"]["name"] == "nginx" and cls.inputs["spec"] == {"controller": "k8s.io/ingress-nginx"}
    check = ingress_check(run)
    assert (check.inputs["ingressController"], check.inputs["ingressPort"]) == ("traefik", 80)
    assert rel["traefik"].name in check.depends_on and cls.name in check.depends_on
    probe_ingress = next(r for r in run.resources if r.type == "kubernetes:networking.k8s.io/v1:Ingress")
    assert cls.name in probe_ingress.depends_on and probe_ingress.inputs["spec"]["ingressClassName"] == "nginx"


@pytest.mark.parametrize("controller", ["traefik", "ingress-nginx"])
def test_the_programs_own_resources_pass_the_policy_pack_with_either_controller(controller):
    run = run_edge("staging", controller=controller)
    assert violations_for(run.for_policies()) == []


@pytest.mark.parametrize("migration", ["trial", "overlap", "retire"])
def test_the_switch_steps_pass_the_policy_pack(migration):
    assert violations_for(run_edge("prod", controller="traefik", migration=migration).for_policies()) == []


# --- switching an existing stack -----------------------------------------------------------------


def test_each_step_of_the_edge_as_data():
    rows = {
        p.state: (p.nginx, p.nginx_retired, p.traefik, p.traefik_ports.get("web"), p.ingress_class,
                  p.probe_controller, p.probe_port)
        for p in (ingress.edge_plan("ingress-nginx", ""), *(ingress.edge_plan("traefik", m) for m in
                                                            ("trial", "overlap", "retire", "")))
    }
    assert rows == {
        "ingress-nginx": (True, False, False, None, False, "ingress-nginx", 80),
        "traefik-trial": (True, False, True, 8000, False, "traefik", 8000),
        "traefik-overlap": (True, False, True, 80, False, "ingress-nginx (Traefik beside it on :80)", 80),
        "traefik-retire": (True, True, True, 80, True, "traefik", 80),
        "traefik": (False, False, True, 80, True, "traefik", 80),
    }
    assert ingress.edge_plan("traefik", "trial").traefik_ports == {"web": 8000, "websecure": 8444}


def test_every_node_allows_80_to_uid_101_before_traefik_starts():
    run = run_edge("prod", controller="traefik", migration="trial")
    commands = sysctl_of(run)
    nodes = sorted(r.inputs["name"] for r in run.of_type("hcloud:index/server:Server"))
    assert len(nodes) > 1
    assert sorted(c.name.removeprefix("keybuzz-prod-edge-sysctl-") for c in commands) == nodes
    traefik_release = releases(run)["traefik"]
    for c in commands:
        assert c.inputs["create"] == traefik.node_sysctl_script()
        assert c.name in traefik_release.depends_on
    # An ingress-nginx stack gets none: it stays as it was.
    assert sysctl_of(run_program("prod")) == []


def test_trial_adds_traefik_on_other_ports_beside_an_untouched_ingress_nginx():
    run = run_edge("staging", controller="traefik", migration="trial")
    rel = releases(run)
    before = BEFORE["stacks"]["staging"]["ingressNginx"]["keybuzz-staging-ingress-nginx"]["inputs"]
    assert json.loads(json.dumps(rel["ingress-nginx"].inputs, default=str)) == before
    ports = rel["traefik"].inputs["values"]["ports"]
    assert (ports["web"]["port"], ports["websecure"]["port"]) == (8000, 8444)
    assert not run.of_type(INGRESS_CLASS)  # ingress-nginx's chart still owns IngressClass nginx
    check = ingress_check(run)
    assert (check.inputs["ingressController"], check.inputs["ingressPort"]) == ("traefik", 8000)
    assert rel["traefik"].name in check.depends_on and rel["ingress-nginx"].name in check.depends_on


def test_overlap_puts_traefik_on_80_and_443_beside_an_untouched_ingress_nginx():
    trial, run = (run_edge("staging", controller="traefik", migration=m) for m in ("trial", "overlap"))
    rel = releases(run)
    before = BEFORE["stacks"]["staging"]["ingressNginx"]["keybuzz-staging-ingress-nginx"]["inputs"]
    assert json.loads(json.dumps(rel["ingress-nginx"].inputs, default=str)) == before
    values = rel["traefik"].inputs["values"]
    assert (values["ports"]["web"]["port"], values["ports"]["websecure"]["port"]) == (80, 443)
    # Only the ports move (one node at a time); nothing else changes.
    trial_values = releases(trial)["traefik"].inputs["values"]
    assert {k: v for k, v in values.items() if k != "ports"} == {k: v for k, v in trial_values.items() if k != "ports"}
    assert values["updateStrategy"]["rollingUpdate"] == {"maxUnavailable": 1, "maxSurge": 0}
    assert values["podSecurityContext"]["runAsUser"] == 101
    # Schedulable beside ingress-nginx: the ports Traefik's pod declares (hostPorts, on the host network)
    # are none of those ingress-nginx's pod declares, though both bind 80/443.
    nginx_declared = ingress.ingress_nginx_declared_ports(rel["ingress-nginx"].inputs["values"])
    assert nginx_declared == {80, 443, 8443}
    assert set(traefik.declared_ports(values).values()) == {11080, 11443, 8080, 9100}
    assert traefik.declared_ports(values) == traefik.declared_ports(trial_values)  # same as in the trial
    assert not run.of_type(INGRESS_CLASS)
    assert {c.name: c.inputs for c in sysctl_of(run)} == {c.name: c.inputs for c in sysctl_of(trial)}  # nothing re-run
    check = ingress_check(run)
    assert (check.inputs["ingressController"], check.inputs["ingressPort"]) == (ingress.OVERLAP_PROBE_NAME, 80)


def test_retire_removes_ingress_nginx_pods_while_traefik_stays_on_80_and_443():
    overlap, run = (run_edge("staging", controller="traefik", migration=m) for m in ("overlap", "retire"))
    rel = releases(run)
    assert rel["ingress-nginx"].inputs["values"] == ingress.ingress_nginx_values(retired=True)
    # Its upgrade waits for the edge guard: an `up` that skipped a step fails before nginx's pods go.
    assert "keybuzz-staging-ingress-edge" in rel["ingress-nginx"].depends_on
    # Traefik is not touched: it already listens on every node's 80/443 when ingress-nginx's pods leave.
    assert rel["traefik"].inputs == releases(overlap)["traefik"].inputs
    # The program's IngressClass `nginx` only after the chart's upgrade has dropped its own.
    (cls,) = run.of_type(INGRESS_CLASS)
    assert rel["ingress-nginx"].name in cls.depends_on
    assert (ingress_check(run).inputs["ingressController"], ingress_check(run).inputs["ingressPort"]) == ("traefik", 80)
    # Nothing waits for ingress-nginx's pods any more: Traefik does not need their ports freed.
    assert not [r for r in run.resources if r.name.endswith("-ingress-nginx-drained")]


def test_the_last_step_removes_ingress_nginx_and_keeps_traefik_and_the_class_as_they_were():
    retire, done = run_edge("prod", controller="traefik", migration="retire"), run_edge("prod", controller="traefik")
    assert set(releases(done)) == {"traefik"}
    assert releases(done)["traefik"].inputs == releases(retire)["traefik"].inputs
    assert [c.name for c in done.of_type(INGRESS_CLASS)] == [c.name for c in retire.of_type(INGRESS_CLASS)]
    assert done.of_type(INGRESS_CLASS)[0].inputs == retire.of_type(INGRESS_CLASS)[0].inputs
    assert {c.name: c.inputs for c in sysctl_of(done)} == {c.name: c.inputs for c in sysctl_of(retire)}


def guard_check(old_run, new_run):
    """What the engine does at preview: the deployed guard's inputs as olds, the new program's as news."""
    olds = next(r for r in old_run.of_type(GUARD) if r.name.endswith("-ingress-edge")).inputs
    news = next(r for r in new_run.of_type(GUARD) if r.name.endswith("-ingress-edge")).inputs
    return EdgeGuardProvider().check(olds, news).failures


def test_a_direct_jump_from_ingress_nginx_to_traefik_is_refused_at_preview():
    failures = guard_check(run_program("prod"), run_edge("prod", controller="traefik"))
    assert len(failures) == 1 and failures[0].property == "edge"
    assert "'ingress-nginx' -> 'traefik' refused" in failures[0].reason
    assert "ingress.migration: trial" in failures[0].reason


SWITCH = [("ingress-nginx", None), ("traefik-trial", "trial"), ("traefik-overlap", "overlap"),
          ("traefik-retire", "retire"), ("traefik", "")]


def switch_run(migration):
    return run_program("prod") if migration is None else run_edge("prod", controller="traefik", migration=migration)


@pytest.mark.parametrize(("old", "new"), list(zip(SWITCH, SWITCH[1:], strict=False)), ids=lambda s: s[0])
def test_the_switch_one_step_per_up_passes_the_guard(old, new):
    # One test per step (two program runs each), so that no test outlives 5 s on a loaded machine.
    old_run, new_run = switch_run(old[1]), switch_run(new[1])
    assert (edge_of(old_run), edge_of(new_run)) == (old[0], new[0])
    assert guard_check(old_run, new_run) == []


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("ingress-nginx", "traefik-overlap"),  # skips the trial: Traefik never checked, yet takes IPv6 traffic
        ("ingress-nginx", "traefik"),
        ("traefik-trial", "traefik-retire"),  # ingress-nginx leaves while Traefik is on 8000: :80 empty
        ("traefik-trial", "traefik"),
        ("traefik-overlap", "traefik"),  # the program's IngressClass would collide with the chart's
        ("traefik-retire", "traefik-overlap"),  # the chart's IngressClass would collide with the program's
        ("traefik-retire", "ingress-nginx"),  # Traefik removed while ingress-nginx runs nowhere
        ("traefik", "ingress-nginx"),
        ("traefik", "traefik-trial"),
    ],
)
def test_every_skipping_or_backward_move_that_would_empty_port_80_is_refused(old, new):
    reason = ingress.refuse_move(old, new)
    assert reason and f"'{old}' -> '{new}' refused" in reason
    assert EdgeGuardProvider().check({"edge": old}, {"edge": new}).failures[0].reason == reason


@pytest.mark.parametrize("state", ["ingress-nginx", "traefik-trial", "traefik-overlap", "traefik-retire", "traefik"])
def test_a_new_stack_or_an_unchanged_step_is_never_refused(state):
    assert ingress.refuse_move(None, state) is None
    assert ingress.refuse_move(state, state) is None
    assert EdgeGuardProvider().check({}, {"edge": state}).failures == []


@pytest.mark.parametrize(
    ("old", "new"),
    [("traefik-trial", "ingress-nginx"), ("traefik-overlap", "traefik-trial"), ("traefik-overlap", "ingress-nginx")],
)
def test_rolling_back_while_ingress_nginx_still_runs_is_allowed(old, new):
    # ingress-nginx never stopped in these steps, so removing or moving Traefik leaves it serving :80.
    assert ingress.refuse_move(old, new) is None


# --- bin/plan ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ingress_cfg", "shown"),
    [({"controller": "ingress-nginx"}, "ingress-nginx"), ({}, "traefik"),
     ({"controller": "traefik", "migration": "trial"}, "traefik-trial"),
     ({"controller": "traefik", "migration": "overlap"}, "traefik-overlap")],
)
def test_bin_plan_names_the_controller(tmp_path, ingress_cfg, shown):
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text(yaml.safe_dump(stack_doc("dev", **ingress_cfg)))
    out = io.StringIO()
    assert main(["dev", "--stack-file", str(path)], out) == EXIT_OK, out.getvalue()
    assert f"\nIngress controller: {shown}\n" in out.getvalue()


# --- config --------------------------------------------------------------------------------------


def test_a_stack_may_set_only_the_controller():
    from test_config import raw_config

    cfg = parse_config(raw_config(ingress={"controller": "ingress-nginx"}), "dev", project_defaults())
    assert (cfg.ingress.controller, cfg.ingress.version, cfg.ingress.image_tag, cfg.ingress.migration) == (
        "ingress-nginx", "37.4.0", "v3.6.17", ""
    )
    assert parse_config(raw_config(), "dev", project_defaults()).ingress.controller == "traefik"


@pytest.mark.parametrize(
    ("value", "key", "allowed"),
    [
        ({"controller": "nginx"}, "ingress.controller", "one of traefik, ingress-nginx"),
        ({"version": "latest"}, "ingress.version", "pinned Traefik chart version"),
        ({"version": "v37.4.0"}, "ingress.version", "pinned Traefik chart version"),
        ({"imageTag": "latest"}, "ingress.imageTag", "v3.6.0 or newer"),
        ({"imageTag": "v3.5.4"}, "ingress.imageTag", "v3.6.0 or newer"),
        ({"migration": "now"}, "ingress.migration", "'trial', 'overlap' or 'retire'"),
        ({"migration": "swap"}, "ingress.migration", "'trial', 'overlap' or 'retire'"),
        ({"controller": "ingress-nginx", "migration": "trial"}, "ingress.migration", "only with ingress.controller"),
        ({"controler": "traefik"}, "ingress", "unknown key(s) ['controler']"),
        ("traefik", "ingress", "an object with keys"),
    ],
)
def test_a_bad_ingress_value_is_refused_naming_key_value_and_what_is_allowed(value, key, allowed):
    error = error_for("dev", ingress=value)
    assert isinstance(error, ConfigError)
    assert error.key == key and allowed in error.allowed
    assert key in str(error)


def test_the_ingress_key_is_declared_and_read():
    from keybuzz.config import CONFIG_KEYS, STRUCTURED_KEYS

    assert "ingress" in CONFIG_KEYS and "ingress" in STRUCTURED_KEYS
    project = yaml.safe_load((REPO / "Pulumi.yaml").read_text())["config"]["ingress"]
    assert project["type"] == "object" and project["description"]
    assert copy.deepcopy(project["default"]) == project_defaults()["ingress"]


def test_the_edge_guard_provider_loads_in_a_fresh_process_like_the_engines():
    import subprocess
    import sys

    from keybuzz.offline import unwrap_secret

    run = run_edge("staging", controller="traefik", migration="retire")
    blobs = {r.name: unwrap_secret(r.inputs["__provider"]) for r in run.resources if r.name.endswith("-ingress-edge")}
    assert len(blobs) == 1
    fresh = (
        "import base64, json, sys, dill\n"
        "print(json.dumps({n: type(dill.loads(base64.b64decode(b))).__qualname__ "
        "for n, b in json.load(sys.stdin).items()}))"
    )
    done = subprocess.run([sys.executable, "-c", fresh], input=json.dumps(blobs), cwd=REPO, capture_output=True,
                          text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "keybuzz-staging-ingress-edge": "EdgeGuardProvider",
    }


def test_a_second_up_of_a_traefik_stack_changes_nothing_at_the_edge():
    first, second = run_edge("prod"), run_edge("prod")
    assert releases(first)["traefik"].inputs == releases(second)["traefik"].inputs
    assert first.of_type(INGRESS_CLASS)[0].inputs == second.of_type(INGRESS_CLASS)[0].inputs
    olds = next(r for r in first.of_type(GUARD) if r.name.endswith("-ingress-edge")).inputs
    news = next(r for r in second.of_type(GUARD) if r.name.endswith("-ingress-edge")).inputs
    assert EdgeGuardProvider().diff("ingress-edge", olds, news).changes is False
    assert {c.name: c.inputs for c in sysctl_of(first)} == {c.name: c.inputs for c in sysctl_of(second)}
