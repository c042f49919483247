"""Cluster access for the checks: a small Protocol, and its real implementation.

This is the only module that imports ``kubernetes``, and only inside the class, so importing
``keybuzz.verify`` (done by the Pulumi program and by the dynamic provider process) stays cheap.
Everything returned is plain JSON-shaped dicts (wire names: ``spec.nodeName``, ``status.podIP``), so a
test fake is a few dicts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


class ClusterAccessError(RuntimeError):
    """An API call or exec failed; the message never contains kubeconfig material."""


@dataclass(frozen=True)
class ExecResult:
    """What one exec produced. ``exit_code`` None: the command did not finish in time."""

    stdout: str
    stderr: str
    exit_code: int | None


class ClusterAccess(Protocol):
    """What the checks need from a cluster, nothing more."""

    def list_nodes(self) -> list[dict[str, Any]]: ...

    def list_pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]: ...

    def exec_in_pod(self, namespace: str, pod: str, container: str, command: list[str],
                    timeout: float) -> ExecResult: ...

    def get_custom_object(self, group: str, version: str, plural: str, name: str) -> dict[str, Any] | None: ...

    def get_service(self, namespace: str, name: str) -> dict[str, Any] | None: ...


class FixtureAccess(ClusterAccess, Protocol):
    """What ``bin/verify`` needs on top of the checks: deploy and remove the probe fixture.

    ``pulumi up`` declares the fixture as resources; outside Pulumi these calls do it instead.
    Manifests are the plain dicts of ``keybuzz.verify.fixture.render_fixture``.
    """

    def apply_object(self, manifest: dict[str, Any]) -> None: ...

    def delete_object(self, manifest: dict[str, Any]) -> None: ...

    def read_object(self, manifest: dict[str, Any]) -> dict[str, Any] | None: ...

    def crd_exists(self, name: str) -> bool: ...


# The kinds the probe fixture is made of: (API class, method suffix, namespaced). Custom resources
# (CalicoNodeStatus) go through CustomObjectsApi with the plural below.
_BUILTIN_KINDS: dict[tuple[str, str], tuple[str, str, bool]] = {
    ("v1", "Namespace"): ("CoreV1Api", "namespace", False),
    ("v1", "ConfigMap"): ("CoreV1Api", "namespaced_config_map", True),
    ("v1", "Service"): ("CoreV1Api", "namespaced_service", True),
    ("apps/v1", "DaemonSet"): ("AppsV1Api", "namespaced_daemon_set", True),
    ("networking.k8s.io/v1", "Ingress"): ("NetworkingV1Api", "namespaced_ingress", True),
}
_CUSTOM_PLURALS = {"CalicoNodeStatus": "caliconodestatuses"}
FIELD_MANAGER = "keybuzz-verify"

CONNECT_TIMEOUT_S = 3.0
READ_TIMEOUT_S = 10.0


class KubernetesClusterAccess:
    """ClusterAccess over the official client, built from a kubeconfig string.

    Every call carries ``_request_timeout=(connect, read)`` and at most one retry, so an unreachable
    API server fails in seconds. Each exec gets its own ApiClient: ``kubernetes.stream.stream``
    temporarily swaps ``call_api`` on the client it is given, which would corrupt concurrent calls
    sharing that client.
    """

    def __init__(self, kubeconfig: str, connect_timeout: float = CONNECT_TIMEOUT_S,
                 read_timeout: float = READ_TIMEOUT_S) -> None:
        import yaml
        from kubernetes import client, config

        try:
            config_dict = yaml.safe_load(kubeconfig)
        except yaml.YAMLError as exc:
            raise ClusterAccessError(f"kubeconfig is not valid YAML (line {_yaml_line(exc)})") from None
        if not isinstance(config_dict, dict):
            raise ClusterAccessError("kubeconfig is not a YAML mapping")
        configuration = type.__call__(client.Configuration)
        try:
            # persist_config=False: never write a refreshed token back anywhere.
            config.load_kube_config_from_dict(config_dict=config_dict, client_configuration=configuration,
                                              persist_config=False)
        except Exception as exc:  # ConfigException and friends carry no secret values
            raise ClusterAccessError(f"kubeconfig rejected: {type(exc).__name__}: {exc}") from None
        configuration.retries = 1
        self._configuration = configuration
        self._timeout = (connect_timeout, read_timeout)
        self._api = client.ApiClient(configuration)

    # -- helpers ---------------------------------------------------------------------------------

    def _call(self, what: str, fn: Any, *args: Any, not_found_ok: bool = False, **kwargs: Any) -> Any:
        from kubernetes.client.exceptions import ApiException

        try:
            result = fn(*args, _request_timeout=self._timeout, **kwargs)
        except ApiException as exc:
            if not_found_ok and exc.status == 404:
                return None
            if not exc.status:  # transport failure wrapped by the client (websocket, connect)
                raise ClusterAccessError(f"{what}: {str(exc.reason).splitlines()[0][:300]}") from None
            detail = _status_message(exc.body)
            raise ClusterAccessError(f"{what}: HTTP {exc.status} {exc.reason}".strip()
                                     + (f": {detail}" if detail else "")) from None
        except Exception as exc:  # urllib3 MaxRetryError, timeouts, TLS errors
            raise ClusterAccessError(f"{what}: {_short_error(exc)}") from None
        if kwargs.get("_preload_content") is False:
            # The raw answer (a 2xx urllib3 response): plain JSON, no typed model to validate.
            import json

            data = result.data
            return json.loads(data) if data else {}
        return self._api.sanitize_for_serialization(result)

    # -- ClusterAccess ---------------------------------------------------------------------------

    def list_nodes(self) -> list[dict[str, Any]]:
        from kubernetes import client

        body = self._call("list nodes", client.CoreV1Api(self._api).list_node)
        return list(body.get("items") or [])

    def list_pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        from kubernetes import client

        body = self._call(f"list pods in {namespace} ({label_selector})",
                          client.CoreV1Api(self._api).list_namespaced_pod, namespace,
                          label_selector=label_selector)
        return list(body.get("items") or [])

    def get_service(self, namespace: str, name: str) -> dict[str, Any] | None:
        from kubernetes import client

        return self._call(f"get service {namespace}/{name}", client.CoreV1Api(self._api).read_namespaced_service,
                          name, namespace, not_found_ok=True)

    def get_custom_object(self, group: str, version: str, plural: str, name: str) -> dict[str, Any] | None:
        from kubernetes import client

        return self._call(f"get {plural}.{group}/{name}",
                          client.CustomObjectsApi(self._api).get_cluster_custom_object,
                          group, version, plural, name, not_found_ok=True)

    # -- FixtureAccess ---------------------------------------------------------------------------

    @property
    def server(self) -> str:
        """The API server URL (not a secret: it is printed so the operator knows what was checked)."""
        return str(self._configuration.host)

    def _object_call(self, verb: str, manifest: dict[str, Any], **kwargs: Any) -> Any:
        """Call ``<verb>_<kind>`` (read/patch/delete) for one fixture manifest."""
        from kubernetes import client

        api_version, kind = manifest.get("apiVersion", ""), manifest.get("kind", "")
        meta = manifest.get("metadata") or {}
        name, namespace = meta.get("name", ""), meta.get("namespace")
        what = f"{verb} {kind} {namespace + '/' if namespace else ''}{name}"
        not_found_ok = verb != "patch"
        kwargs["_preload_content"] = False
        if (api_version, kind) in _BUILTIN_KINDS:
            api_class, suffix, namespaced = _BUILTIN_KINDS[(api_version, kind)]
            fn = getattr(getattr(client, api_class)(self._api), f"{verb}_{suffix}")
            args = (name, namespace) if namespaced else (name,)
            return self._call(what, fn, *args, not_found_ok=not_found_ok, **kwargs)
        if kind not in _CUSTOM_PLURALS or "/" not in api_version:
            raise ClusterAccessError(f"{what}: kind not supported by bin/verify")
        group, version = api_version.split("/", 1)
        api = client.CustomObjectsApi(self._api)
        verb = "get" if verb == "read" else verb
        if namespace:
            fn = getattr(api, f"{verb}_namespaced_custom_object")
            args = (group, version, namespace, _CUSTOM_PLURALS[kind], name)
        else:
            fn = getattr(api, f"{verb}_cluster_custom_object")
            args = (group, version, _CUSTOM_PLURALS[kind], name)
        return self._call(what, fn, *args, not_found_ok=not_found_ok, **kwargs)

    def apply_object(self, manifest: dict[str, Any]) -> None:
        """Server-side apply (create or update, our fields win): re-running bin/verify converges."""
        self._object_call("patch", manifest, body=manifest, field_manager=FIELD_MANAGER, force=True,
                          _content_type="application/apply-patch+yaml")

    def delete_object(self, manifest: dict[str, Any]) -> None:
        """Delete in the background (a namespace takes its contents with it); already gone is fine."""
        self._object_call("delete", manifest, propagation_policy="Background")

    def read_object(self, manifest: dict[str, Any]) -> dict[str, Any] | None:
        """The live object a manifest names (plain JSON), or None when there is none."""
        return self._object_call("read", manifest)

    def crd_exists(self, name: str) -> bool:
        from kubernetes import client

        found = self._call(f"get CustomResourceDefinition {name}",
                           client.ApiextensionsV1Api(self._api).read_custom_resource_definition, name,
                           not_found_ok=True, _preload_content=False)
        return found is not None

    def exec_in_pod(self, namespace: str, pod: str, container: str, command: list[str],
                    timeout: float) -> ExecResult:
        from kubernetes import client
        from kubernetes.stream import stream

        api = client.ApiClient(self._configuration)
        try:
            ws = stream(
                client.CoreV1Api(api).connect_get_namespaced_pod_exec,
                pod, namespace, container=container, command=command,
                stdin=False, stdout=True, stderr=True, tty=False,
                _preload_content=False, _request_timeout=(self._timeout[0], timeout),
            )
        except Exception as exc:
            raise ClusterAccessError(f"exec in {namespace}/{pod}: {_short_error(exc)}") from None
        try:
            ws.run_forever(timeout=timeout)
            stdout = ws.read_stdout(timeout=0) or ""
            stderr = ws.read_stderr(timeout=0) or ""
            exit_code: int | None = None
            if not ws.is_open():
                try:
                    exit_code = ws.returncode
                except Exception:  # an exec error status that is not an exit code
                    exit_code = -1
            return ExecResult(stdout, stderr, exit_code)
        finally:
            ws.close()
            api.close()


def _short_error(exc: BaseException) -> str:
    """The first line of an exception, without urllib3's connection-object noise."""
    reason = getattr(exc, "reason", None)
    text = str(reason if reason is not None else exc) or type(exc).__name__
    text = text.splitlines()[0] if text else type(exc).__name__
    # urllib3: "<urllib3.connection.HTTPSConnection object at 0x..>: Failed to establish a new
    # connection: [Errno 111] Connection refused"
    if ">: " in text:
        text = text.split(">: ", 1)[1]
    return f"{type(exc).__name__}: {text}"[:300]


def _status_message(body: Any) -> str:
    """The ``message`` of a Kubernetes Status body (why a request was refused), shortened."""
    import json

    try:
        status = json.loads(body) if isinstance(body, str | bytes) else None
    except ValueError:
        return ""
    message = status.get("message") if isinstance(status, dict) else None
    return str(message).splitlines()[0][:240] if message else ""


def _yaml_line(exc: Exception) -> str:
    mark = getattr(exc, "problem_mark", None)
    return str(mark.line + 1) if mark is not None else "?"
