"""Stack configuration: read once, parsed into typed objects, validated before any resource exists.

Why one module: every other module takes a ``ClusterConfig`` and never reads ``pulumi.Config``, so a
bad value fails early with one message naming the key, the value and what is allowed, instead of
half-way through a deployment.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from keybuzz.rollout import BatchSize, parse_batch_size

# Hetzner Cloud locations and the network zone each belongs to (a subnet's zone must match).
NETWORK_ZONES: dict[str, str] = {
    "fsn1": "eu-central",
    "nbg1": "eu-central",
    "hel1": "eu-central",
    "ash": "us-east",
    "hil": "us-west",
    "sin": "ap-southeast",
}

# Fixed private addresses: host offsets inside the subnet. Offset 1 is Hetzner's gateway.
CONTROL_PLANE_FIRST_OFFSET = 10
CONTROL_PLANE_MAX = CONTROL_PLANE_FIRST_OFFSET - 1  # offsets 10..18 keep clear of the workers
WORKER_FIRST_OFFSET = 20

SSH_KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)
_SSH_KEY_RE = re.compile(r"^(?P<type>\S+) (?P<body>[A-Za-z0-9+/]+={0,3})(?: .*)?$")
_NAME_RE = re.compile(r"^[a-z]([a-z0-9-]{0,30}[a-z0-9])?$")
_K3S_VERSION_RE = re.compile(r"^v\d+\.\d+\.\d+\+k3s\d+$")
_SEMVER_RE = re.compile(r"^v?\d+\.\d+\.\d+$")
_LABEL_KEY_RE = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_TAINT_RE = re.compile(r"^(?P<key>[^=:\s]+)(=(?P<value>[^:\s]*))?:(?P<effect>NoSchedule|PreferNoSchedule|NoExecute)$")
WORLD_CIDRS = ("0.0.0.0/0", "::/0")
PROD_STACKS = ("prod",)
# The promotion chain: these stacks only deploy what the previous stage verified (keybuzz/promotion.py).
PROMOTION_CHAIN = {"staging": "dev", "prod": "staging"}


class ConfigError(ValueError):
    """A stack config value that cannot be deployed; the message names key, value and what is allowed."""

    def __init__(self, key: str, value: object, allowed: str, problem: str = "is invalid") -> None:
        self.key = key
        self.value = value
        self.allowed = allowed
        # Named as in the stack file: `keybuzz-k3s:controlPlane.count`, not `controlPlane.count`.
        shown = key if ":" in key.split(".", 1)[0].split("[", 1)[0] else f"{PROJECT}:{key}"
        super().__init__(f"config '{shown}' = {value!r} {problem}: {allowed}")


@dataclass(frozen=True)
class ControlPlane:
    count: int
    server_type: str
    upgrade_disk: bool = False  # a type change also grows the disk (then the type can never go down again)


@dataclass(frozen=True)
class NodePool:
    name: str
    count: int
    server_type: str
    labels: dict[str, str] = field(default_factory=dict)
    taints: tuple[str, ...] = ()
    upgrade_disk: bool = False


# Hetzner Load Balancer in front of the K3s servers' API (port 6443).
API_LB_MODES = ("auto", "on", "off")
# Host offset of the load balancer's fixed private IP in the subnet (servers are at 10.., workers at 20..).
API_LB_PRIVATE_OFFSET = 5


@dataclass(frozen=True)
class ApiLoadBalancer:
    """``mode`` auto: on when there is more than one server. ``type`` is a pinned Hetzner LB type.

    ``public``: the LB's public interface on, and the kubeconfig, the provider and ``apiServer`` use
    its public IPv4. Off by default: Cloud Firewalls do not apply to load balancers, so a public LB
    exposes 6443 to the whole internet (K3s TLS and authentication are then the only protection).
    """

    mode: str
    type: str
    public: bool = False


@dataclass(frozen=True)
class VerifyConfig:
    """Post-deploy overlay checks (see keybuzz/verify)."""

    enabled: bool
    timeout_seconds: int
    external_urls: tuple[str, ...]
    client_image: str
    echo_image: str
    ingress_host: str
    # Per external URL: () = resolved by DNS; ("edge",) = this stack's node public IPs; or given IPv4s.
    # Like `curl --resolve`: check the new edge before DNS points at it (README, "Moving from the runbook").
    external_resolve: tuple[tuple[str, ...], ...] = ()
    # The checks focused on each rollout batch (keybuzz/verify/rollout_check.py); off for an emergency rollout.
    between_batches: bool = True


@dataclass(frozen=True)
class IngressConfig:
    """Which controller serves the nodes' 80/443 (keybuzz/ingress.py, keybuzz/traefik.py).

    ``version``/``image_tag``: Traefik's chart and image (ingress-nginx keeps ``ingressNginxVersion``,
    since both run during a switch). ``migration``: the step of a switch ingress-nginx -> Traefik.
    """

    controller: str
    version: str
    image_tag: str
    migration: str = ""


@dataclass(frozen=True)
class Node:
    """One server as the rest of the program sees it: a name, a role and a fixed private IP."""

    name: str
    role: str  # "server" (K3s control plane) or "agent"
    pool: str
    index: int  # position in its pool, 0-based
    server_type: str
    private_ip: str
    labels: dict[str, str]
    taints: tuple[str, ...]
    upgrade_disk: bool = False


@dataclass(frozen=True)
class ClusterConfig:
    stack: str
    cluster_name: str
    location: str
    image: str
    control_plane: ControlPlane
    node_pools: tuple[NodePool, ...]
    ssh_public_keys: tuple[str, ...]
    admin_cidrs: tuple[str, ...]
    network_cidr: str
    subnet_cidr: str
    pod_cidr: str
    service_cidr: str
    k3s_version: str
    calico_version: str
    calico_mtu: int  # 0 = derived from the private network MTU
    ingress_nginx_version: str
    verify: VerifyConfig
    promotes_from: str
    allow_unverified_promotion: bool
    api_load_balancer: ApiLoadBalancer = ApiLoadBalancer("auto", "lb11")
    deletion_protection: bool = False
    agent_upgrade_batch: BatchSize = BatchSize()  # keybuzz/rollout.py cuts the agents with it
    ingress: IngressConfig = IngressConfig("ingress-nginx", "37.4.0", "v3.6.17")
    # Volumes and etcd snapshots (keybuzz/storage.py, keybuzz/etcd_backup.py); None: not configured.
    storage: Any = None  # keybuzz.storage.StorageConfig
    etcd_backup: Any = None  # keybuzz.etcd_backup.EtcdBackup
    # Full names of the nodes `bin/deploy <stack> replace` is replacing in this run (keybuzz/replace.py).
    replace_nodes: frozenset[str] = frozenset()

    @property
    def network_zone(self) -> str:
        return NETWORK_ZONES[self.location]

    @property
    def api_lb_enabled(self) -> bool:
        """The API load balancer exists: explicitly on, or auto with more than one server."""
        mode = self.api_load_balancer.mode
        return mode == "on" or (mode == "auto" and self.control_plane.count > 1)

    @property
    def api_lb_public(self) -> bool:
        """The API is reached through the load balancer's public IPv4 (``apiLoadBalancer.public``)."""
        return self.api_lb_enabled and self.api_load_balancer.public

    @property
    def api_lb_private_ip(self) -> str:
        """The load balancer's fixed private IP (known at plan time, so configs can name it)."""
        return str(ipaddress.ip_network(self.subnet_cidr).network_address + API_LB_PRIVATE_OFFSET)

    @property
    def join_ip(self) -> str:
        """The private address every joining node registers through: the load balancer, else the first server."""
        return self.api_lb_private_ip if self.api_lb_enabled else self.servers[0].private_ip

    # Cached (the config is frozen): every node's resources read these, and planning is O(nodes), so
    # recomputing made a 500-node program quadratic (bin/bench).
    @cached_property
    def nodes(self) -> tuple[Node, ...]:
        return plan_nodes(self)

    @cached_property
    def servers(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.role == "server")

    @cached_property
    def agents(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.role == "agent")


def plan_nodes(cfg: ClusterConfig) -> tuple[Node, ...]:
    """Name every node and give it a fixed private IP.

    Control-plane nodes take offsets 10.., workers 20.. in pool order, so adding a worker never
    moves a control-plane address (growing an earlier pool does shift later pools: add pools last).
    """
    subnet = ipaddress.ip_network(cfg.subnet_cidr)
    nodes = [
        Node(
            name=f"{cfg.cluster_name}-cp-{i + 1}",
            role="server",
            pool="control-plane",
            index=i,
            server_type=cfg.control_plane.server_type,
            private_ip=str(subnet.network_address + CONTROL_PLANE_FIRST_OFFSET + i),
            labels={},
            taints=(),
            upgrade_disk=cfg.control_plane.upgrade_disk,
        )
        for i in range(cfg.control_plane.count)
    ]
    offset = WORKER_FIRST_OFFSET
    for pool in cfg.node_pools:
        for i in range(pool.count):
            nodes.append(
                Node(
                    name=f"{cfg.cluster_name}-{pool.name}-{i + 1}",
                    role="agent",
                    pool=pool.name,
                    index=i,
                    server_type=pool.server_type,
                    private_ip=str(subnet.network_address + offset),
                    labels=dict(pool.labels),
                    taints=pool.taints,
                    upgrade_disk=pool.upgrade_disk,
                )
            )
            offset += 1
    return tuple(nodes)


# --- parsing -------------------------------------------------------------------------------------


def _require(raw: Mapping[str, Any], key: str) -> Any:
    if key not in raw or raw[key] is None:
        raise ConfigError(key, None, "required: add it to Pulumi.<stack>.yaml under config: (README, \"First run\")")
    return raw[key]


def _string(value: object, key: str, allowed: str = "a non-empty string") -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(key, value, allowed)
    return value.strip()


def _int(value: object, key: str, minimum: int = 0) -> int:
    # Stack files may hold "3" (the CLI stores `pulumi config set` values as strings).
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(key, value, f"a whole number >= {minimum}")
    return value


def _bool(value: object, key: str) -> bool:
    # The CLI stores `pulumi config set` values as the strings "true"/"false"; nothing else is a boolean
    # (not yes/no/1/0: a typo must not switch an override on).
    if isinstance(value, str) and value in ("true", "false"):
        return value == "true"
    if not isinstance(value, bool):
        raise ConfigError(key, value, "true or false (yes/no/on/1/0 are refused, so a typo cannot switch it on)")
    return value


# What a structured key must look like, said in the operator's words (not "a list" or "valid JSON").
SHAPES: dict[str, str] = {
    "sshPublicKeys": 'a list of OpenSSH public key lines, e.g. ["ssh-ed25519 AAAA... you@laptop"]',
    "adminCidrs": 'a list of CIDRs, e.g. ["198.51.100.7/32"]',
    "nodePools": "a list of pools {name, count, serverType, labels, taints, upgradeDisk}",
    "controlPlane": "an object {count, serverType, upgradeDisk}",
    "verify": "an object {enabled, timeoutSeconds, externalUrls, clientImage, echoImage, ingressHost, betweenBatches}",
    "verify.externalUrls": 'a list of http(s) URLs or {url, resolve}, e.g. ["https://example.com/health"]',
    "apiLoadBalancer": "an object {mode, type, public}",
    "storage": "an object {csi, csiVersion, reclaimPolicy, localPath}",
    "etcdBackup": "an object {bucket, endpoint, region, folder, schedule, retention}",
}


def _shape(key: str) -> str:
    base = re.sub(r"\[\d+\]", "", key)
    return SHAPES.get(key) or SHAPES.get(base) or "a list"


def _list(value: object, key: str) -> list[Any]:
    if not isinstance(value, list):
        raise ConfigError(key, value, _shape(key))
    return value


def _object(value: object, key: str, fields: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(key, value, f"an object with keys {sorted(fields)}")
    unknown = set(value) - fields
    if unknown:
        close = [m for u in sorted(unknown) for m in difflib.get_close_matches(u, fields, n=1, cutoff=0.6)]
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise ConfigError(key, value, f"unknown key(s) {sorted(unknown)}; {hint}allowed: {sorted(fields)}")
    return value


def _name(value: object, key: str) -> str:
    text = _string(value, key)
    if not _NAME_RE.match(text):
        raise ConfigError(key, value, "lowercase letters, digits and '-', starting with a letter, at most 32")
    return text


def _ipv4_network(value: object, key: str) -> ipaddress.IPv4Network:
    text = _string(value, key, "an IPv4 CIDR such as 10.0.0.0/16")
    try:
        return ipaddress.IPv4Network(text)
    except ValueError as exc:
        raise ConfigError(key, value, f"an IPv4 CIDR with no host bits set ({exc})") from None


def _ssh_key(value: object, key: str) -> str:
    text = _string(value, key, "an OpenSSH public key line ('ssh-ed25519 AAAA... comment')")
    match = _SSH_KEY_RE.match(text)
    if not match or match["type"] not in SSH_KEY_TYPES:
        raise ConfigError(key, _shorten(text), f"an OpenSSH public key line of type {', '.join(SSH_KEY_TYPES)}")
    try:
        blob = base64.b64decode(match["body"], validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(key, _shorten(text), "an OpenSSH public key with a valid base64 body") from None
    # The blob starts with the key type, length-prefixed: a cheap proof that the key is not mangled.
    declared = match["type"].encode()
    if blob[4 : 4 + len(declared)] != declared:
        raise ConfigError(key, _shorten(text), "a public key whose body matches its declared type")
    return text


def _shorten(text: str) -> str:
    return text if len(text) <= 40 else f"{text[:30]}...{text[-6:]}"


def _labels(value: object, key: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(key, value, "a map of Kubernetes label keys to string values")
    for k, v in value.items():
        if not isinstance(k, str) or not _LABEL_KEY_RE.match(k) or not isinstance(v, str):
            raise ConfigError(f"{key}.{k}", v, "a Kubernetes label: key [prefix/]name, string value")
    return dict(value)


def _taints(value: object, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    items = _list(value, key)
    for i, taint in enumerate(items):
        if not isinstance(taint, str) or not _TAINT_RE.match(taint):
            raise ConfigError(
                f"{key}[{i}]", taint, "key[=value]:effect with effect NoSchedule, PreferNoSchedule or NoExecute"
            )
    return tuple(items)


def _url(value: object, key: str) -> str:
    text = _string(value, key, "an http(s) URL")
    if not re.match(r"^https?://[^\s/]+", text):
        raise ConfigError(key, value, "an http:// or https:// URL")
    return text


def _pinned_image(value: object, key: str) -> str:
    text = _string(value, key, "an image reference pinned by tag or digest")
    last = text.rsplit("/", 1)[-1]
    if "@sha256:" not in text and (":" not in last or last.endswith(":latest")):
        raise ConfigError(key, value, "an image pinned by tag (not 'latest') or by digest")
    return text


def _mtu_override(value: object) -> int:
    from keybuzz.calico import validate_mtu_override

    mtu = _int(value, "calicoMtu")
    if mtu == 0:
        return 0
    try:
        return validate_mtu_override(mtu)
    except ValueError as exc:
        raise ConfigError("calicoMtu", mtu, f"0 (derive it) or {str(exc).split('allowed: ', 1)[-1]}") from None


def _promotes_from(value: object, stack: str) -> str:
    promotes_from = "" if value in (None, "") else _string(value, "promotesFrom", "a stack name")
    required = PROMOTION_CHAIN.get(stack)
    if required and promotes_from != required:
        raise ConfigError(
            "promotesFrom", promotes_from, f"'{required}' in stack '{stack}' (dev -> staging -> prod); never ungated"
        )
    if promotes_from == stack:
        raise ConfigError("promotesFrom", promotes_from, "another stack than this one")
    return promotes_from


VERIFY_FIELDS = {
    "enabled", "timeoutSeconds", "externalUrls", "clientImage", "echoImage", "ingressHost", "betweenBatches"
}


def _verify(value: object, defaults: Mapping[str, Any]) -> VerifyConfig:
    # Defaults merge per field so a stack can set only `verify.externalUrls`.
    raw = {**defaults, **_object(value, "verify", VERIFY_FIELDS)}
    external = [
        _external_url(u, f"verify.externalUrls[{i}]")
        for i, u in enumerate(_list(raw.get("externalUrls"), "verify.externalUrls"))
    ]
    timeout = _int(raw.get("timeoutSeconds"), "verify.timeoutSeconds", minimum=5)
    if timeout > 170:
        # Python dynamic providers are known to hang past ~180 s (pulumi/pulumi#13841).
        raise ConfigError("verify.timeoutSeconds", timeout, "5..170 seconds (dynamic providers stall near 180 s)")
    return VerifyConfig(
        enabled=_bool(raw.get("enabled"), "verify.enabled"),
        timeout_seconds=timeout,
        external_urls=tuple(url for url, _ in external),
        external_resolve=tuple(resolve for _, resolve in external),
        client_image=_pinned_image(raw.get("clientImage"), "verify.clientImage"),
        echo_image=_pinned_image(raw.get("echoImage"), "verify.echoImage"),
        ingress_host=_string(raw.get("ingressHost"), "verify.ingressHost", "a DNS host name"),
        between_batches=_bool(raw.get("betweenBatches", True), "verify.betweenBatches"),
    )


EDGE = "edge"


def _external_url(value: object, key: str) -> tuple[str, tuple[str, ...]]:
    """A URL, or ``{url, resolve}``: resolve ``edge`` (this stack's nodes) or a list of IPv4s (curl --resolve)."""
    if not isinstance(value, dict):
        return _url(value, key), ()
    item = _object(value, key, {"url", "resolve"})
    url = _url(item.get("url"), f"{key}.url")
    resolve = item.get("resolve", "")
    if resolve in ("", None):
        return url, ()
    if resolve == EDGE:
        return url, (EDGE,)
    allowed = "'edge' (this stack's node public IPs), a list of IPv4 addresses, or '' (DNS)"
    ips = _list(resolve, f"{key}.resolve") if isinstance(resolve, list) else None
    if not ips:
        raise ConfigError(f"{key}.resolve", resolve, allowed)
    for j, ip in enumerate(ips):
        try:
            ipaddress.IPv4Address(str(ip))
        except ValueError:
            raise ConfigError(f"{key}.resolve[{j}]", ip, "an IPv4 address such as 203.0.113.10") from None
    return url, tuple(str(ip) for ip in ips)


def parse_config(raw: Mapping[str, Any], stack: str, defaults: Mapping[str, Any] | None = None) -> ClusterConfig:
    """Turn the stack's raw config (Pulumi.yaml defaults already applied) into a valid ``ClusterConfig``.

    ``defaults`` are the Pulumi.yaml defaults, used to fill missing fields inside object-valued keys.
    Raises ``ConfigError`` on the first bad value.
    """
    defaults = defaults or {}
    cluster_name = _name(_require(raw, "clusterName"), "clusterName")
    location = _string(_require(raw, "location"), "location")
    if location not in NETWORK_ZONES:
        raise ConfigError("location", location, f"one of {', '.join(NETWORK_ZONES)}")

    cp_raw = _object(_require(raw, "controlPlane"), "controlPlane", {"count", "serverType", "upgradeDisk"})
    cp_count = _int(cp_raw.get("count"), "controlPlane.count", minimum=1)
    if cp_count % 2 == 0:
        raise ConfigError(
            "controlPlane.count", cp_count, "an odd number (1, 3, 5): etcd needs a majority to keep quorum"
        )
    if cp_count > CONTROL_PLANE_MAX:
        raise ConfigError("controlPlane.count", cp_count, f"at most {CONTROL_PLANE_MAX}")
    control_plane = ControlPlane(
        cp_count,
        _server_type(cp_raw.get("serverType"), "controlPlane.serverType", location),
        _bool(cp_raw.get("upgradeDisk", False), "controlPlane.upgradeDisk"),
    )

    pools: list[NodePool] = []
    for i, pool_raw in enumerate(_list(_require(raw, "nodePools"), "nodePools")):
        key = f"nodePools[{i}]"
        pool = _object(pool_raw, key, {"name", "count", "serverType", "labels", "taints", "upgradeDisk"})
        name = _name(pool.get("name"), f"{key}.name")
        if name in {p.name for p in pools} or name == "cp":
            raise ConfigError(f"{key}.name", name, "a pool name used once (and not 'cp', the control plane's)")
        pools.append(
            NodePool(
                name=name,
                count=_int(pool.get("count"), f"{key}.count"),
                server_type=_server_type(pool.get("serverType"), f"{key}.serverType", location),
                labels=_labels(pool.get("labels"), f"{key}.labels"),
                taints=_taints(pool.get("taints"), f"{key}.taints"),
                upgrade_disk=_bool(pool.get("upgradeDisk", False), f"{key}.upgradeDisk"),
            )
        )

    keys = tuple(
        _ssh_key(k, f"sshPublicKeys[{i}]") for i, k in enumerate(_list(_require(raw, "sshPublicKeys"), "sshPublicKeys"))
    )
    if not keys:
        raise ConfigError("sshPublicKeys", [], "at least one OpenSSH public key (Pulumi connects over SSH)")

    admin = []
    for i, cidr in enumerate(_list(_require(raw, "adminCidrs"), "adminCidrs")):
        text = _string(cidr, f"adminCidrs[{i}]", "a CIDR such as 203.0.113.7/32")
        try:
            admin.append(str(ipaddress.ip_network(text)))
        except ValueError:
            raise ConfigError(f"adminCidrs[{i}]", cidr, "a CIDR such as 203.0.113.7/32 (no host bits set)") from None
    if stack in PROD_STACKS:
        if not admin:
            raise ConfigError("adminCidrs", admin, f"in stack '{stack}', at least one office/VPN CIDR")
        world = [c for c in admin if c in WORLD_CIDRS]
        if world:
            raise ConfigError("adminCidrs", admin, f"in stack '{stack}', no world-open range ({', '.join(world)})")

    network = _ipv4_network(_require(raw, "networkCidr"), "networkCidr")
    subnet = _ipv4_network(_require(raw, "subnetCidr"), "subnetCidr")
    pod = _ipv4_network(_require(raw, "podCidr"), "podCidr")
    service = _ipv4_network(_require(raw, "serviceCidr"), "serviceCidr")
    if not subnet.subnet_of(network):
        raise ConfigError("subnetCidr", str(subnet), f"a range inside networkCidr {network}")
    ranges = {"podCidr": pod, "serviceCidr": service, "networkCidr": network}
    for key_a in ("podCidr", "serviceCidr"):
        a = ranges[key_a]
        # Name every range it overlaps, so one fix is enough.
        hits = [f"{key_b} {b}" for key_b, b in ranges.items() if key_b != key_a and a.overlaps(b)]
        if hits:
            both = " (it overlaps both)" if len(hits) > 1 else ""
            raise ConfigError(key_a, str(a), f"a range that does not overlap {' nor '.join(hits)}{both}")

    total_workers = sum(p.count for p in pools)
    last_offset = WORKER_FIRST_OFFSET + total_workers - 1
    if last_offset >= subnet.num_addresses - 1:
        raise ConfigError(
            "subnetCidr",
            str(subnet),
            f"room for {total_workers} workers at host offsets {WORKER_FIRST_OFFSET}.. "
            f"(needs at least /{32 - (last_offset + 2 - 1).bit_length()})",
        )

    k3s_version = _string(_require(raw, "k3sVersion"), "k3sVersion")
    if not _K3S_VERSION_RE.match(k3s_version):
        raise ConfigError("k3sVersion", k3s_version, "a pinned K3s release such as v1.34.1+k3s1 (never a channel)")
    calico_version = _string(_require(raw, "calicoVersion"), "calicoVersion")
    if not _SEMVER_RE.match(calico_version):
        raise ConfigError("calicoVersion", calico_version, "a pinned release such as v3.31.7")
    ingress_version = _string(_require(raw, "ingressNginxVersion"), "ingressNginxVersion")
    if not _SEMVER_RE.match(ingress_version):
        raise ConfigError("ingressNginxVersion", ingress_version, "a pinned chart version such as 4.15.1")
    api_lb = _api_load_balancer(raw.get("apiLoadBalancer"), defaults.get("apiLoadBalancer") or {})
    _check_api_load_balancer(api_lb, control_plane.count)

    return ClusterConfig(
        stack=stack,
        cluster_name=cluster_name,
        location=location,
        image=_string(_require(raw, "image"), "image"),
        control_plane=control_plane,
        node_pools=tuple(pools),
        ssh_public_keys=keys,
        admin_cidrs=tuple(admin),
        network_cidr=str(network),
        subnet_cidr=str(subnet),
        pod_cidr=str(pod),
        service_cidr=str(service),
        k3s_version=k3s_version,
        calico_version=calico_version,
        calico_mtu=_mtu_override(raw.get("calicoMtu", 0)),
        ingress_nginx_version=ingress_version,
        verify=_verify(_require(raw, "verify"), defaults.get("verify") or {}),
        promotes_from=_promotes_from(raw.get("promotesFrom"), stack),
        allow_unverified_promotion=_bool(raw.get("allowUnverifiedPromotion", False), "allowUnverifiedPromotion"),
        api_load_balancer=api_lb,
        deletion_protection=_bool(raw.get("deletionProtection", False), "deletionProtection"),
        agent_upgrade_batch=parse_batch_size(raw.get("agentUpgradeBatchSize", 1)),
        ingress=_ingress(raw.get("ingress"), defaults.get("ingress") or {}),
        **_storage_and_backup(raw, defaults, stack, location, cluster_name),
    )


def _storage_and_backup(
    raw: Mapping[str, Any], defaults: Mapping[str, Any], stack: str, location: str, cluster_name: str
) -> dict[str, Any]:
    """``storage`` and ``etcdBackup``: each parsed beside its decider (keybuzz/storage.py, etcd_backup.py)."""
    from keybuzz.etcd_backup import parse_etcd_backup
    from keybuzz.storage import parse_storage

    return {
        "storage": parse_storage(raw.get("storage"), defaults.get("storage") or {}, stack),
        "etcd_backup": parse_etcd_backup(
            raw.get("etcdBackup"), defaults.get("etcdBackup") or {}, location, cluster_name
        ),
    }


INGRESS_FIELDS = {"controller", "version", "imageTag", "migration"}


def _ingress(value: object, defaults: Mapping[str, Any]) -> IngressConfig:
    from keybuzz.ingress import CONTROLLERS, INGRESS_NGINX, MIGRATION_PHASES

    # Per-field merge, so a stack can say only `{controller: ingress-nginx}`.
    raw = {**defaults, **_object(value if value is not None else {}, "ingress", INGRESS_FIELDS)}
    controller = raw.get("controller")
    if controller not in CONTROLLERS:
        raise ConfigError("ingress.controller", controller, f"one of {', '.join(CONTROLLERS)}")
    version = _string(raw.get("version"), "ingress.version", "a pinned Traefik chart version such as 37.4.0")
    if not _SEMVER_RE.match(version) or version.startswith("v"):
        raise ConfigError("ingress.version", version, "a pinned Traefik chart version such as 37.4.0")
    tag = _string(raw.get("imageTag"), "ingress.imageTag", "a pinned Traefik image tag such as v3.6.17")
    if not re.fullmatch(r"v3\.(?:[6-9]|\d\d)\.\d+", tag):
        raise ConfigError("ingress.imageTag", tag, "a pinned Traefik release v3.6.0 or newer (the NGINX provider)")
    migration = raw.get("migration") or ""
    if migration not in MIGRATION_PHASES:
        raise ConfigError("ingress.migration", migration, "'' (none), 'trial', 'overlap' or 'retire'")
    if migration and controller == INGRESS_NGINX:
        raise ConfigError(
            "ingress.migration", migration, "only with ingress.controller: traefik (it is a step towards Traefik)"
        )
    return IngressConfig(controller=controller, version=version, image_tag=tag, migration=migration)


_LB_TYPE_RE = re.compile(r"^lb\d+$")


def _api_load_balancer(value: object, defaults: Mapping[str, Any]) -> ApiLoadBalancer:
    raw = {**defaults, **_object(value if value is not None else {}, "apiLoadBalancer", {"mode", "type", "public"})}
    mode = raw.get("mode", "auto")
    if mode not in API_LB_MODES:
        raise ConfigError("apiLoadBalancer.mode", mode, f"one of {', '.join(API_LB_MODES)} (auto: on with >1 server)")
    lb_type = _string(raw.get("type", "lb11"), "apiLoadBalancer.type", "a Hetzner load balancer type such as lb11")
    if not _LB_TYPE_RE.match(lb_type):
        raise ConfigError("apiLoadBalancer.type", lb_type, "a Hetzner load balancer type such as lb11, lb21, lb31")
    public = _bool(raw.get("public", False), "apiLoadBalancer.public")
    return ApiLoadBalancer(mode=mode, type=lb_type, public=public)


def _check_api_load_balancer(lb: ApiLoadBalancer, control_plane_count: int) -> None:
    """``public: true`` needs a load balancer: refused rather than silently falling back to cp-1's IP."""
    enabled = lb.mode == "on" or (lb.mode == "auto" and control_plane_count > 1)
    if lb.public and not enabled:
        raise ConfigError(
            "apiLoadBalancer.public",
            True,
            f"false while the load balancer is off (mode {lb.mode}, controlPlane.count {control_plane_count}); "
            "set mode: on to keep a public API address with one server",
        )


def _server_type(value: object, key: str, location: str) -> str:
    from keybuzz.server_types import server_type_problem

    server_type = _string(value, key, "a Hetzner server type such as cx23")
    problem = server_type_problem(server_type, location)
    if problem:
        raise ConfigError(key, server_type, problem)
    return server_type


def load() -> tuple[ClusterConfig, Secrets]:
    """Read the current stack's config through Pulumi (the CLI has applied Pulumi.yaml defaults)."""
    import json
    import os

    import pulumi
    from pulumi.runtime.config import get_config_secret_keys_env, is_config_secret

    cfg = pulumi.Config()
    namespaced = all_config()
    secret = {k for k in namespaced if is_config_secret(k)} | set(get_config_secret_keys_env())
    check_keys(namespaced, cfg.name, secret_keys=frozenset(secret))
    structured = set(STRUCTURED_KEYS) | {
        k for k, v in project_config_block().items() if isinstance(v, dict) and v.get("type") in ("object", "array")
    }
    raw: dict[str, Any] = {}
    for key in known_keys():
        text = cfg.get(key)
        if text is None:
            continue
        try:
            raw[key] = json.loads(text) if key in structured else text
        except json.JSONDecodeError:
            # A plain string where a list or object belongs: say which shape is wanted.
            raise ConfigError(key, text, _shape(key) if key in SHAPES else "a list or an object") from None
    parsed = parse_config(raw, pulumi.get_stack(), project_defaults())
    parsed = with_replace_nodes(parsed, os.environ)
    secrets = read_secrets(cfg, parsed)
    check_connecting_key(parsed, cfg.get("sshPrivateKey"))
    return parsed, secrets


def with_replace_nodes(cfg: ClusterConfig, environ: Mapping[str, str]) -> ClusterConfig:
    """``cfg`` with the nodes named in KEYBUZZ_REPLACE_NODES (set by `bin/deploy <stack> replace`)."""
    import dataclasses

    from keybuzz.replace import replace_nodes_from_env

    return dataclasses.replace(cfg, replace_nodes=replace_nodes_from_env(environ, cfg))


def check_connecting_key(cfg: ClusterConfig, private_key: str | None) -> None:
    """Refuse an ``sshPrivateKey`` whose public half is not in ``sshPublicKeys`` (keybuzz/ssh_keys.py)."""
    if not private_key:
        return
    from keybuzz.ssh_keys import connecting_key_problem, public_key_from_private

    if public_key_from_private(private_key) is None:
        import pulumi

        pulumi.log.warn(
            "sshPrivateKey is not an OpenSSH (or PEM RSA) private key this program can read the public half "
            "of, so it cannot check that the key is in sshPublicKeys; `ssh-keygen -p -f KEYFILE` rewrites it "
            "in the OpenSSH format"
        )
        return
    problem = connecting_key_problem(private_key, cfg.ssh_public_keys)
    if problem:
        raise ConfigError("sshPrivateKey", "[secret, not shown]", problem)


def read_secrets(cfg: Any, parsed: ClusterConfig | None = None) -> Secrets:
    """Secret config as Outputs; a private key typed in plain text is refused, not used."""
    import os

    import pulumi
    from pulumi.runtime.config import is_config_secret

    s3 = {name: _secret_key(cfg, name) for name in ("etcdBackupAccessKey", "etcdBackupSecretKey")}
    if parsed is not None and parsed.etcd_backup is not None:
        from keybuzz.etcd_backup import check_credentials

        access, secret = (s3[k] is not None for k in ("etcdBackupAccessKey", "etcdBackupSecretKey"))
        check_credentials(parsed.etcd_backup, access, secret)
    # The Hetzner token the hcloud provider reads (HCLOUD_TOKEN), for the CSI driver's Secret: a Pulumi
    # secret from the moment it enters the program.
    token = os.environ.get("HCLOUD_TOKEN") or None
    extra = {
        "hcloud_token": pulumi.Output.secret(token) if token else None,
        "etcd_s3_access_key": s3["etcdBackupAccessKey"],
        "etcd_s3_secret_key": s3["etcdBackupSecretKey"],
    }
    key = f"{cfg.name}:sshPrivateKey"
    if not cfg.get("sshPrivateKey"):
        return Secrets(ssh_private_key=None, **extra)
    if not is_config_secret(key):
        import pulumi

        stack = pulumi.get_stack()
        raise ConfigError(
            "sshPrivateKey",
            "[plain text, not shown]",
            f"a secret: bin/deploy {stack} config rm sshPrivateKey, then bin/deploy {stack} config set --secret "
            "sshPrivateKey < KEYFILE",
        )
    return Secrets(ssh_private_key=cfg.get_secret("sshPrivateKey"), **extra)


def _secret_key(cfg: Any, name: str) -> Any:
    """A secret-only key as an Output, None when unset; a value set without --secret is refused, not shown."""
    from pulumi.runtime.config import is_config_secret

    if not cfg.get(name):
        return None
    if not is_config_secret(f"{cfg.name}:{name}"):
        raise ConfigError(name, "[plain text, not shown]", f"a secret: bin/deploy <stack> config set --secret {name}")
    return cfg.get_secret(name)


@dataclass(frozen=True)
class Secrets:
    """Secret config, kept as Pulumi Outputs so it never becomes plain text in the program."""

    ssh_private_key: Any  # pulumi.Output[str] | None: None means "use the SSH agent"
    hcloud_token: Any = None  # pulumi.Output[str] | None: HCLOUD_TOKEN, for the CSI driver
    etcd_s3_access_key: Any = None  # pulumi.Output[str] | None: etcdBackupAccessKey
    etcd_s3_secret_key: Any = None  # pulumi.Output[str] | None: etcdBackupSecretKey


# Keys whose value is a secret: bin/deploy refuses to set them without --secret (keybuzz/preflight.py),
# before the CLI writes anything, and the program refuses them when the stack file holds them in clear.
SECRET_KEYS = ("sshPrivateKey", "etcdBackupAccessKey", "etcdBackupSecretKey")
STRUCTURED_KEYS = (
    "controlPlane", "nodePools", "sshPublicKeys", "adminCidrs", "verify", "apiLoadBalancer", "ingress",
    "storage", "etcdBackup",
)
CONFIG_KEYS = (
    "clusterName",
    "location",
    "image",
    "controlPlane",
    "nodePools",
    "sshPublicKeys",
    "adminCidrs",
    "networkCidr",
    "subnetCidr",
    "podCidr",
    "serviceCidr",
    "k3sVersion",
    "calicoVersion",
    "calicoMtu",
    "ingressNginxVersion",
    "verify",
    "promotesFrom",
    "allowUnverifiedPromotion",
    "apiLoadBalancer",
    "deletionProtection",
    "agentUpgradeBatchSize",
    "ingress",
    "storage",
    "etcdBackup",
    "etcdBackupAccessKey",
    "etcdBackupSecretKey",
)


def project_config_block() -> dict[str, Any]:
    """Pulumi.yaml's `config:` block: every key the program reads, with its type and default."""
    from pathlib import Path

    import yaml

    project = yaml.safe_load((Path(__file__).resolve().parents[1] / "Pulumi.yaml").read_text())
    return dict(project.get("config") or {})


def project_defaults() -> dict[str, Any]:
    """The `default:` of every key in Pulumi.yaml (the CLI applies them; mocks and tools need them too)."""
    return {k: v["default"] for k, v in project_config_block().items() if isinstance(v, dict) and "default" in v}


def known_keys() -> tuple[str, ...]:
    """Every key the program reads: Pulumi.yaml's `config:` block (so a new key needs no second list)."""
    return tuple(dict.fromkeys([*project_config_block(), *CONFIG_KEYS]))


PROJECT = "keybuzz-k3s"


def all_config() -> dict[str, Any]:
    """Every namespaced key the engine handed the program (PULUMI_CONFIG under the CLI, mocks offline)."""
    from pulumi.runtime import config as runtime_config

    return {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}


def check_keys(
    namespaced: Mapping[str, Any],
    project: str = PROJECT,
    known: tuple[str, ...] | None = None,
    secret_keys: frozenset[str] = frozenset(),
) -> None:
    """Refuse keys the program would silently ignore: unknown keys of this project, and keys under a
    namespace that is a near-miss of the project name (`keybuzz:podCidr`, `keybuzz-k3:podCidr`).

    The engine hands secrets decrypted: a misspelt secret key (`sshPrivatekey`) is named, its value not.
    """
    known = known if known is not None else known_keys()
    for full_key in sorted(namespaced):
        namespace, sep, name = full_key.partition(":")
        if not sep:
            continue
        value = "[secret, not shown]" if full_key in secret_keys else namespaced[full_key]
        if namespace == project:
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
                if not close:  # case slips (podCIDR) score low on ratio: compare case-folded too
                    folded = {k.lower(): k for k in known}
                    close = [folded[m] for m in difflib.get_close_matches(name.lower(), folded, n=1, cutoff=0.6)]
                hint = f"did you mean '{project}:{close[0]}'? " if close else ""
                raise ConfigError(
                    full_key, value, f"{hint}this project's keys are {', '.join(known)}", "is not a key of this project"
                )
        elif difflib.get_close_matches(namespace, [project], n=1, cutoff=0.6):
            raise ConfigError(
                full_key,
                value,
                f"did you mean '{project}:{name}'? (this project's keys are under '{project}:')",
                f"is not under this project's namespace '{project}:'",
            )


def load_stack_yaml(text: str) -> Any:
    """Parse a stack file as the CLI does (YAML 1.2): only true/false are booleans, `yes`/`on` stay strings.

    PyYAML follows YAML 1.1, where `yes` is true: an offline run would take `allowUnverifiedPromotion: yes`
    as an override the real CLI hands the program as the string "yes" (which is refused).
    """
    import yaml

    class Yaml12Loader(yaml.SafeLoader):
        pass

    Yaml12Loader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    Yaml12Loader.add_implicit_resolver(
        "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
    )
    return yaml.load(text, Loader=Yaml12Loader)  # noqa: S506 (a SafeLoader subclass)
