"""The probe fixture: labels, tolerations, no host networking, schema-valid CalicoNodeStatus."""


import jsonschema
import yaml

from keybuzz.verify import fixture, plan
from tests.calico.crd_schema import load_crd

NODES = ["node-b", "node-a"]


def _by_kind(docs):
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def test_render_fixture_returns_every_object_in_apply_order():
    docs = fixture.render_fixture("overlay-probe", NODES, "client:1@sha256:x", "echo:1@sha256:y", "p.invalid")
    assert [d["kind"] for d in docs] == ["Namespace", "ConfigMap", "DaemonSet", "Service", "Ingress", "DaemonSet",
                                         "CalicoNodeStatus", "CalicoNodeStatus"]
    assert [d["spec"]["node"] for d in docs[-2:]] == ["node-a", "node-b"]


def test_daemonsets_carry_the_contract_labels_and_tolerate_every_taint():
    docs = _by_kind(fixture.render_fixture(nodes=NODES))
    for name in (fixture.ECHO_NAME, fixture.CLIENT_NAME):
        ds = docs[("DaemonSet", name)]
        assert ds["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": name}
        assert ds["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] == name
        effects = {t["effect"] for t in ds["spec"]["template"]["spec"]["tolerations"] if t["operator"] == "Exists"}
        assert effects == {"NoSchedule", "NoExecute"}


def test_nothing_uses_host_network_or_host_ports():
    text = yaml.safe_dump(fixture.render_fixture(nodes=NODES))
    assert "hostNetwork" not in text and "hostPort" not in text


def test_every_container_has_small_requests_and_limits():
    for ds in (fixture.render_echo_daemonset(), fixture.render_client_daemonset()):
        spec = ds["spec"]["template"]["spec"]
        for c in spec.get("initContainers", []) + spec["containers"]:
            assert set(c["resources"]) == {"requests", "limits"}


def test_echo_serves_node_name_and_bulk_on_the_planned_port_and_paths():
    template = fixture.render_echo_config()["data"]["default.conf.template"]
    assert f"listen {plan.ECHO_PORT};" in template
    assert 'return 200 "${NODE_NAME}\\n";' in template
    assert "location = /bulk" in template and "alias /probe-data/bulk.bin;" in template
    echo = fixture.render_echo_daemonset()["spec"]["template"]["spec"]
    env = {e["name"]: e for e in echo["containers"][0]["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert f"head -c {plan.BULK_BYTES} /dev/urandom" in echo["initContainers"][0]["command"][-1]
    mounts = {m["mountPath"] for m in echo["containers"][0]["volumeMounts"]}
    assert "/etc/nginx/templates" in mounts


def test_service_and_ingress_point_at_the_echo_pods():
    svc = fixture.render_echo_service()
    assert svc["spec"]["type"] == "ClusterIP" and svc["spec"]["ports"][0]["port"] == plan.SERVICE_PORT
    ing = fixture.render_ingress(host="p.invalid")
    assert ing["spec"]["ingressClassName"] == "nginx"
    assert ing["spec"]["rules"][0]["host"] == "p.invalid"
    assert ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] == fixture.ECHO_NAME


def test_client_container_name_matches_what_the_checks_exec_into():
    client = fixture.render_client_daemonset()["spec"]["template"]["spec"]["containers"][0]
    assert client["name"] == plan.CLIENT_CONTAINER


def test_default_images_are_pinned_by_tag_and_digest():
    for image in (fixture.DEFAULT_CLIENT_IMAGE, fixture.DEFAULT_ECHO_IMAGE):
        name, digest = image.split("@sha256:")
        assert ":" in name and len(digest) == 64


def _fields_exist(obj, schema, where=""):
    if isinstance(obj, dict):
        props = schema.get("properties")
        for key, value in obj.items():
            if props is None:
                continue
            assert key in props, f"{where}.{key} is not in the CRD schema (the API server would prune it)"
            _fields_exist(value, props[key], f"{where}.{key}")


def test_calico_node_status_validates_against_the_calico_crd_and_sets_only_known_fields():
    crd = load_crd("crd.projectcalico.org_caliconodestatuses.yaml")
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    status = fixture.render_node_status("node-a")
    jsonschema.validate(status, schema)
    _fields_exist(status["spec"], schema["properties"]["spec"], "spec")
    assert status["metadata"]["name"] == "overlay-probe-node-a"
    assert "BGP" in status["spec"]["classes"]


def test_echo_pods_serve_their_own_eth0_mtu_for_the_mtu_check():
    template = fixture.render_echo_config()["data"]["default.conf.template"]
    assert f"location = {plan.ECHO_MTU_PATH}" in template and "alias /probe-data/mtu;" in template
    init = fixture.render_echo_daemonset()["spec"]["template"]["spec"]["initContainers"][0]["command"][-1]
    # The init container shares the pod's network namespace: its eth0 is the pod's.
    assert init.endswith("cat /sys/class/net/eth0/mtu > /probe-data/mtu")
