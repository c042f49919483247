"""The check resources register under the Pulumi mock engine with the documented inputs."""

import pulumi

from keybuzz.verify import providers

REGISTERED = []


class _Mocks(pulumi.runtime.Mocks):
    def new_resource(self, args):
        REGISTERED.append((args.typ, args.name, dict(args.inputs)))
        return [f"{args.name}-id", dict(args.inputs)]

    def call(self, args):
        return {}


def test_create_checks_declares_one_resource_per_check():
    REGISTERED.clear()
    pulumi.runtime.set_mocks(_Mocks(), preview=False)

    @pulumi.runtime.test
    def declare():
        args = providers.OverlayCheckArgs(
            kubeconfig="apiVersion: v1", nodes=providers.nodes_input([("node-a", "10.0.1.10")]),
            pod_cidr="10.42.0.0/16", subnet_cidr="10.0.1.0/24", pool_mtu=1430, run_id="r1")
        declared = providers.create_checks("overlay", args)
        return pulumi.Output.all(*(r.urn for r in declared.values()))

    declare()
    types = sorted(t for t, _, _ in REGISTERED)
    assert types == sorted(f"pulumi-python:dynamic/keybuzz:{cls.__name__}" for cls in providers.CHECKS.values())
    _, name, inputs = next(r for r in REGISTERED if r[0].endswith(":PodMeshCheck"))
    assert name == "overlay-mesh"
    assert inputs["nodes"] == [{"name": "node-a", "privateIp": "10.0.1.10"}]
    assert (inputs["poolMtu"], inputs["timeoutSeconds"], inputs["runId"]) == (1430, 60, "r1")
    assert "__provider" in inputs
