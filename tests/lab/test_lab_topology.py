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


def test_a_lab_killed_with_sigterm_removes_its_namespaces(lab):
    """The lab's signal handler tears it down: nothing of a stopped run is left behind."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    here = Path(__file__).resolve().parent
    code = (f"import sys; sys.path[:0] = [{str(here)!r}, {str(here.parents[1])!r}]\n"
            "import lab, time\n"
            "with lab.Lab(node_count=2) as l:\n"
            "    print(l.prefix, flush=True)\n"
            "    time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        prefix = proc.stdout.readline().strip()
        assert prefix.startswith("kbl")
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert f"{prefix}-n0" in listed
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=4)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert prefix not in listed
    assert not Path(f"/etc/netns/{prefix}-c0").exists()


def test_rendered_probe_scripts_pass_shellcheck(lab, tmp_path):
    import subprocess

    from keybuzz.verify import plan

    nodes = sorted(lab.nodes)
    pods = plan.ProbePods(clients={n: n for n in nodes}, echo_ips={n: lab.node(n).echo_ip for n in nodes})
    plans = (plan.plan_mesh(nodes, pods) + plan.plan_mtu(nodes, pods, 1430) + plan.plan_dns(nodes, pods)
             + plan.plan_clusterip(nodes, pods, "10.43.100.7", 9)
             + plan.plan_ingress(nodes, pods, lab.nodes, "h.invalid")
             + plan.plan_external(nodes, pods, ["https://example.com/"]))
    # One shellcheck over every script (a process each took seconds on a loaded machine); it names
    # the file of each finding.
    files = []
    for i, p in enumerate(plans):
        files.append(tmp_path / f"{i}-{p.node}-{p.probes[0].key.split(':')[0]}.sh")
        files[-1].write_text(p.script())
    result = subprocess.run(["shellcheck", "-s", "sh", *map(str, files)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout
    assert len(files) == 18  # 6 kinds of probe script x 3 client pods
