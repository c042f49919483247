"""Hold a rendered manifest to the CRD schema the API server will use for it, strictly.

Two checks, because either alone lets real mistakes through:

* a JSON-Schema validator (Draft 7) over ``openAPIV3Schema``: types, enums, required fields,
  ``int32``/``int64`` ranges;
* a walker that fails on any field the schema does not declare. CRD schemas do not forbid extra
  properties, and the API server prunes unknown fields without an error, so a misspelled field
  (``nodeAddressAutoDetectionV4``) would silently do nothing in a real cluster.

The CRDs are Calico's own: ``<repo>/../shared/calico-crds`` (see its README), else the cache
``<repo>/.cache/calico-crds`` that ``bin/test`` fills from the pinned tigera-operator chart's ``crds/``
when the network allows (``python tests/calico/crd_schema.py --fetch``). When neither holds them, the
tests that need them skip (one line in the summary says how to get them), except under ``CI=true``,
where they fail. Use from other tests:

    from tests.calico.crd_schema import assert_conforms
    assert_conforms(manifest, "crd.projectcalico.org_caliconodestatuses.yaml")
"""

from __future__ import annotations

import functools
import io
import os
import sys
import tarfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import yaml

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # run as a script by bin/test
    sys.path.insert(0, str(REPO))

from keybuzz.calico import CALICO_VERSION, TIGERA_OPERATOR_VERSION  # noqa: E402

SHARED_CRD_DIR = REPO.parent / "shared" / "calico-crds"
CACHE_CRD_DIR = REPO / ".cache" / "calico-crds"  # git-ignored
REQUIRED_CRDS = (
    "operator.tigera.io_installations.yaml",
    "crd.projectcalico.org_ippools.yaml",
    "crd.projectcalico.org_caliconodestatuses.yaml",
)
# The pinned chart (its version is the Calico version); its crds/ folder holds every CRD it installs.
CHART_URL = (
    f"https://github.com/projectcalico/calico/releases/download/{CALICO_VERSION}/tigera-operator-{CALICO_VERSION}.tgz"
)
HOW_TO_GET = (
    f"Calico {CALICO_VERSION} CRD schemas not found in ../shared/calico-crds nor .cache/calico-crds: "
    "run `.venv/bin/python tests/calico/crd_schema.py --fetch` with network access, or copy them there"
)
_missing_reported: list[str] = []  # read by tests/conftest.py for its one summary line


def _version_line() -> str:
    return f"(Calico {CALICO_VERSION})"


def find_crd_dir() -> Path | None:
    """Where the CRD schemas are: beside the repo first, then the cache; None when neither has them.

    A folder counts only when its README names the pinned Calico version: after a version bump the
    old schemas would pass manifests the new CRDs refuse (a stale cache is fetched again).
    """
    for folder in (SHARED_CRD_DIR, CACHE_CRD_DIR):
        readme = folder / "README.md"
        if (
            all((folder / name).is_file() for name in REQUIRED_CRDS)
            and readme.is_file()
            and _version_line() in readme.read_text()
        ):
            return folder
    return None


CRD_DIR = find_crd_dir() or SHARED_CRD_DIR


def require_crds() -> Path:
    """The CRD folder; skips the calling test when absent, fails it under CI=true (CI must have them)."""
    folder = find_crd_dir()
    if folder is not None:
        return folder
    if os.environ.get("CI", "").lower() == "true":
        raise FileNotFoundError(f"CI=true and {HOW_TO_GET}")
    import pytest

    _missing_reported.append(HOW_TO_GET)
    pytest.skip(HOW_TO_GET)


def fetch_crds(url: str = CHART_URL, dest: Path = CACHE_CRD_DIR, timeout: float = 5.0) -> str:
    """Fill the cache from the pinned chart's ``crds/``; returns a one-line outcome, never raises."""
    if find_crd_dir() is not None:
        return "Calico CRD schemas present"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (a pinned https URL)
            archive = response.read()
        dest.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            for member in tar.getmembers():
                if member.isfile() and "/crds/" in member.name and member.name.endswith(".yaml"):
                    data = tar.extractfile(member)
                    if data is not None:
                        (dest / Path(member.name).name).write_bytes(data.read())
        (dest / "README.md").write_text(
            f"# Calico's own CRD schemas {_version_line()}\n\nFetched from {url} (`crds/`), the chart "
            f"that installs the operator at tag {TIGERA_OPERATOR_VERSION}.\n"
        )
    except Exception as exc:  # noqa: BLE001 (offline is normal: say so in one line)
        return f"Calico CRD schemas not fetched ({type(exc).__name__}: {exc}); the tests that need them will skip"
    return "Calico CRD schemas fetched into .cache/calico-crds" if find_crd_dir() else "chart had no CRDs we need"

# ObjectMeta is validated by the API server itself, not by the CRD schema (which says only
# ``type: object``); these are the fields a manifest may set on it.
OBJECT_META_FIELDS = frozenset(
    {"name", "generateName", "namespace", "labels", "annotations", "finalizers", "ownerReferences"}
)

_INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@functools.cache
def load_crd(crd_file: str) -> dict[str, Any]:
    """Parse one CRD file (cached: the Installation CRD is 1.4 MB); skips the test when none are found."""
    path = require_crds() / crd_file
    if not path.is_file():
        raise FileNotFoundError(f"CRD schema {path} not found beside the others in {path.parent}")
    with path.open() as handle:
        return yaml.load(handle, Loader=_Loader)


def openapi_schema(manifest: dict[str, Any], crd: dict[str, Any]) -> dict[str, Any]:
    """The served version's schema matching the manifest's apiVersion and kind."""
    group, _, version = str(manifest.get("apiVersion", "")).rpartition("/")
    spec = crd["spec"]
    if group != spec["group"] or manifest.get("kind") != spec["names"]["kind"]:
        raise AssertionError(
            f"manifest is {manifest.get('apiVersion')} {manifest.get('kind')}, "
            f"CRD is {spec['group']} {spec['names']['kind']}"
        )
    for entry in spec["versions"]:
        if entry["name"] == version and entry.get("served", False):
            return entry["schema"]["openAPIV3Schema"]
    raise AssertionError(f"version {version!r} of {spec['names']['kind']} is not served by the CRD")


def _as_json_schema(node: Any) -> Any:
    """OpenAPI v3 (Kubernetes flavour) to Draft 7: ``nullable`` and bare int-or-string."""
    if isinstance(node, list):
        return [_as_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _as_json_schema(value) for key, value in node.items()}
    if out.get("x-kubernetes-int-or-string") and "anyOf" not in out and "type" not in out:
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def _format_checker() -> jsonschema.FormatChecker:
    checker = jsonschema.FormatChecker(formats=())
    for name, (low, high) in _INT_RANGES.items():

        def in_range(value: object, low: int = low, high: int = high) -> bool:
            return not isinstance(value, int) or isinstance(value, bool) or low <= value <= high

        checker.checks(name)(in_range)
    return checker


def schema_errors(manifest: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    """Type, enum, required and format errors, one readable line each."""
    return _errors(jsonschema.Draft7Validator(_as_json_schema(schema), format_checker=_format_checker()), manifest)


@functools.cache
def _cached_validator(crd_file: str, api_version: str, kind: str) -> jsonschema.Draft7Validator:
    schema = openapi_schema({"apiVersion": api_version, "kind": kind}, load_crd(crd_file))
    return jsonschema.Draft7Validator(_as_json_schema(schema), format_checker=_format_checker())


def _errors(validator: jsonschema.Draft7Validator, manifest: dict[str, Any]) -> list[str]:
    return sorted(
        f"{'.'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message}"
        for error in validator.iter_errors(manifest)
    )


def _subschemas(schema: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield schema
    for keyword in ("allOf", "anyOf", "oneOf"):
        for sub in schema.get(keyword, []):
            yield from _subschemas(sub)


def unknown_fields(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Paths of fields that the schema does not declare, i.e. that the API server would prune."""
    if any(sub.get("x-kubernetes-preserve-unknown-fields") for sub in _subschemas(schema)):
        return []
    found: list[str] = []
    if isinstance(value, dict):
        properties: dict[str, Any] = {}
        additional: dict[str, Any] | None = None
        for sub in _subschemas(schema):
            properties.update(sub.get("properties", {}))
            if isinstance(sub.get("additionalProperties"), dict):
                additional = sub["additionalProperties"]
        for key, child in value.items():
            where = f"{path}.{key}" if path else key
            if key in properties:
                found += unknown_fields(child, properties[key], where)
            elif additional is not None:
                found += unknown_fields(child, additional, where)
            else:
                found.append(where)
    elif isinstance(value, list):
        items = schema.get("items")
        for index, child in enumerate(value):
            where = f"{path}[{index}]"
            if isinstance(items, dict):
                found += unknown_fields(child, items, where)
    return found


def _metadata_errors(manifest: dict[str, Any]) -> list[str]:
    metadata = manifest.get("metadata", {})
    if not isinstance(metadata, dict):
        return ["metadata: not an object"]
    return [f"metadata.{key}" for key in metadata if key not in OBJECT_META_FIELDS]


def assert_conforms(manifest: dict[str, Any], crd_file: str) -> None:
    """Fail with every problem listed if ``manifest`` would not be stored exactly as written."""
    schema = openapi_schema(manifest, load_crd(crd_file))
    validator = _cached_validator(crd_file, manifest["apiVersion"], manifest["kind"])
    problems = _errors(validator, manifest)
    body = {key: value for key, value in manifest.items() if key != "metadata"}
    pruned = unknown_fields(body, schema) + _metadata_errors(manifest)
    problems += [f"{where}: not in the {crd_file} schema (the API server would prune it)" for where in pruned]
    if problems:
        raise AssertionError(f"{manifest.get('kind')} does not conform:\n  " + "\n  ".join(problems))


if __name__ == "__main__":
    if sys.argv[1:] != ["--fetch"]:
        sys.exit("usage: crd_schema.py --fetch")
    print(fetch_crds())
