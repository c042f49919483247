"""Where the CRD schemas come from: beside the repo, else the cache; skip locally, fail under CI."""

import pytest

from . import crd_schema


def _crds(folder, version=crd_schema.CALICO_VERSION):
    folder.mkdir(parents=True)
    for name in crd_schema.REQUIRED_CRDS:
        (folder / name).write_text("kind: CustomResourceDefinition\n")
    (folder / "README.md").write_text(f"# Calico's own CRD schemas (Calico {version})\n")
    return folder


@pytest.fixture
def places(tmp_path, monkeypatch):
    shared, cache = tmp_path / "shared" / "calico-crds", tmp_path / "repo" / ".cache" / "calico-crds"
    monkeypatch.setattr(crd_schema, "SHARED_CRD_DIR", shared)
    monkeypatch.setattr(crd_schema, "CACHE_CRD_DIR", cache)
    return shared, cache


def test_shared_folder_beside_the_repo_wins(places):
    shared, cache = places
    _crds(shared), _crds(cache)
    assert crd_schema.find_crd_dir() == shared


def test_cache_is_used_without_shared(places):
    _, cache = places
    _crds(cache)
    assert crd_schema.find_crd_dir() == cache


def test_a_folder_missing_one_crd_does_not_count(places):
    shared, _ = places
    _crds(shared)
    (shared / crd_schema.REQUIRED_CRDS[0]).unlink()
    assert crd_schema.find_crd_dir() is None


def test_absent_crds_skip_with_how_to_get_them(places, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="crd_schema.py --fetch"):
        crd_schema.require_crds()


def test_absent_crds_fail_under_ci(places, monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(FileNotFoundError, match="CI=true and Calico v3.31.7 CRD schemas not found"):
        crd_schema.require_crds()


def test_fetch_fails_fast_and_quietly_offline(places, tmp_path):
    # A URL that cannot be reached (no such file): one line back, nothing raised, nothing cached.
    outcome = crd_schema.fetch_crds(url=f"file://{tmp_path}/missing.tgz", dest=places[1])
    assert outcome.startswith("Calico CRD schemas not fetched (")
    assert not places[1].exists()


def test_fetch_extracts_the_charts_crds_into_the_cache(places, tmp_path):
    import io
    import tarfile

    archive = tmp_path / "chart.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        for name in (*crd_schema.REQUIRED_CRDS, "operator.tigera.io_tigerastatuses.yaml"):
            data = b"kind: CustomResourceDefinition\n"
            info = tarfile.TarInfo(f"tigera-operator/crds/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    outcome = crd_schema.fetch_crds(url=f"file://{archive}", dest=places[1])
    assert outcome == "Calico CRD schemas fetched into .cache/calico-crds"
    assert crd_schema.find_crd_dir() == places[1]
    assert "Calico v3.31.7" in (places[1] / "README.md").read_text()


def test_schemas_of_another_calico_version_do_not_count(places):
    # After a calicoVersion bump, a cache of the old chart's CRDs must be fetched again, not used.
    shared, cache = places
    _crds(shared, version="v3.30.0")
    _crds(cache)
    assert crd_schema.find_crd_dir() == cache
    (cache / "README.md").write_text("# Calico's own CRD schemas (Calico v3.30.0)\n")
    assert crd_schema.find_crd_dir() is None
