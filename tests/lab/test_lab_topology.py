"""The lab itself: addresses, MTUs and Services behave like the cluster they stand for."""

from lab import DNS_SVC_IP, ECHO_SVC_IP, TUNNEL_MTU

from keybuzz.verify.plan import BULK_BYTES


def test_pods_have_the_tunnel_mtu_and_reach_echo_pods_on_other_nodes(clean_lab):
    a, c = clean_lab.node("node-a"), clean_lab.node("node-c")
    out = clean_lab.netns_exec(a.client_ns, f"cat /sys/class/net/eth0/mtu; curl -sS -m 2 http://{c.echo_ip}:8080/node;"
                                            f" curl -sS -m 2 http://{c.echo_ip}:8080/mtu")
    assert out.split() == [str(TUNNEL_MTU), "node-c", str(TUNNEL_MTU)]


def test_the_echo_service_and_dns_clusterips_are_dnatted_like_kube_proxy(clean_lab):
    a = clean_lab.node("node-a")
    out = clean_lab.netns_exec(a.client_ns, f"curl -sS -m 2 -o /dev/null -w '%{{size_download}}\\n' "
                                            f"http://{ECHO_SVC_IP}/bulk; dig +short +time=1 +tries=1 "
                                            f"@{DNS_SVC_IP} kubernetes.default.svc.cluster.local A")
    assert out.split() == [str(BULK_BYTES), "10.43.0.1"]


def test_a_prefix_from_a_dead_pid_is_cleaned_up(lab):
    import subprocess

    import lab as lab_module

    stale = "kbl999999-n0"
    subprocess.run(["ip", "netns", "add", stale], check=True)
    assert stale in lab_module.cleanup_stale()
    assert stale not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
