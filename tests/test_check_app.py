"""bin/check-app: any Pulumi Python program, offline, through the guardrail pack, with bin/plan's exit codes.

Subprocess runs of the mock engine take 1-2 s each: one run per scenario, shared by module fixtures.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from harness import REPO

from keybuzz import exit_codes
from keybuzz.check_app import (
    PACK_REQUIREMENTS,
    Interpreter,
    choose_interpreter,
    main,
    pick_stack,
    requirement_lines,
    run_in_child,
)
from keybuzz.offline import AppProject, ProjectError, app_config, read_project

EXAMPLE = REPO / "examples" / "app-stack"
CHECK_APP = REPO / "bin" / "check-app"

# What a team gets wrong: an app on the host network with a host port, and a v3 Release whose
# values ask the chart for a host port (ingress-nginx's spelling), outside any exempt namespace.
BAD_APP = """
k8s.helm.v3.Release(
    "edge",
    chart="ingress-nginx",
    version="4.15.1",
    namespace=ns,
    repository_opts={"repo": "https://kubernetes.github.io/ingress-nginx"},
    values={"controller": {"kind": "Deployment", "hostPort": {"enabled": True}}},
)
"""


def check_app(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([str(CHECK_APP), *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def in_process(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out, err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def bad_app(tmp_path_factory) -> Path:
    app = tmp_path_factory.mktemp("apps") / "bad-app"
    shutil.copytree(EXAMPLE, app)
    source = (app / "__main__.py").read_text()
    source = source.replace(
        '"spec": {\n                "containers": [',
        '"spec": {\n                "hostNetwork": True,\n                "containers": [',
    )
    assert "hostNetwork" in source
    (app / "__main__.py").write_text(source + BAD_APP)
    return app


@pytest.fixture(scope="module")
def raising_app(tmp_path_factory) -> Path:
    app = tmp_path_factory.mktemp("apps") / "raising-app"
    shutil.copytree(EXAMPLE, app)
    with (app / "__main__.py").open("a") as f:
        f.write('\nraise RuntimeError("no database URL for this stack")\n')
    return app


@pytest.fixture(scope="module")
def example_run() -> subprocess.CompletedProcess:
    return check_app("examples/app-stack")


@pytest.fixture(scope="module")
def bad_run(bad_app) -> subprocess.CompletedProcess:
    return check_app(str(bad_app))


@pytest.fixture(scope="module")
def raising_run(raising_app) -> subprocess.CompletedProcess:
    return check_app(str(raising_app))


# --- the four scenarios, as a CI job runs them -----------------------------------------------------


def test_the_example_app_stack_is_clean(example_run):
    assert example_run.returncode == exit_codes.OK, example_run.stdout + example_run.stderr
    assert "project shop-web, stack dev (config: Pulumi.yaml defaults + Pulumi.dev.yaml)" in example_run.stdout
    assert "0 mandatory violation(s), 0 advisory" in example_run.stdout
    assert example_run.stdout.rstrip().endswith("verdict: clean")


def test_a_host_network_deployment_and_a_host_port_release_are_refused_by_name(bad_run):
    assert bad_run.returncode == exit_codes.POLICY, bad_run.stdout + bad_run.stderr
    lines = [line.strip() for line in bad_run.stdout.splitlines() if line.strip().startswith("[")]
    # By resource (edge, then web), each resource's findings in policy order: the same on every run.
    assert lines == [
        "[mandatory] no-host-port: edge (kubernetes:helm.sh/v3:Release) values.controller.hostPort.enabled: "
        "the chart is asked for hostPort.enabled: true; remove it from the values and expose the app through "
        "a ClusterIP Service + Ingress",
        "[advisory] helm-release-opaque: edge (kubernetes:helm.sh/v3:Release) chart: a helm.sh/v3 Release is "
        "one opaque object: only its values are checked, not the Deployments, DaemonSets and Services its chart "
        "renders. Declare the chart with kubernetes.helm.v4.Chart, which registers each rendered object, so the "
        "pack checks them like any other resource",
        "[mandatory] no-host-network: web (kubernetes:apps/v1:Deployment) spec.template.spec.hostNetwork: "
        "hostNetwork is true; remove it and expose the app through a ClusterIP Service + Ingress instead",
    ]
    assert "verdict: REFUSED" in bad_run.stdout


def test_a_program_that_raises_is_an_internal_error_in_one_line(raising_app, raising_run):
    lines = (raising_app / "__main__.py").read_text().splitlines()
    line = 1 + next(i for i, text in enumerate(lines) if text.startswith("raise RuntimeError"))
    assert raising_run.returncode == exit_codes.INTERNAL
    assert raising_run.stdout == ""
    assert raising_run.stderr.splitlines() == [
        f"check-app: the program raised RuntimeError: no database URL for this stack at __main__.py:{line}",
        "check-app: rerun with --debug for the traceback",
    ]


def test_a_missing_folder_is_bad_input():
    done = check_app("no/such/app")
    assert (done.returncode, done.stdout, done.stderr) == (
        exit_codes.INPUT,
        "",
        "check-app: no such folder: no/such/app\n",
    )


# --- the example itself, as the mock engine sees it ------------------------------------------------


@pytest.fixture(scope="module")
def example_resources() -> dict[tuple[str, str], dict]:
    request = {
        "dir": str(EXAMPLE),
        "project_file": str(EXAMPLE / "Pulumi.yaml"),
        "stack": "dev",
        "stack_doc": {"config": {"shop-web:host": "shop.test", "shop-web:replicas": 3}},
    }
    resources = run_in_child(Interpreter(Path(sys.executable), EXAMPLE / "requirements.txt"), request)
    return {(r["type"].rsplit(":", 1)[1], r["name"]): r["inputs"] for r in resources}


def test_the_example_declares_a_deployment_a_clusterip_service_an_nginx_ingress_and_a_v4_chart(example_resources):
    assert sorted(example_resources) == [
        ("Chart", "cache"),
        ("Deployment", "web"),
        ("Ingress", "web"),
        ("Namespace", "shop"),
        ("Service", "web"),
    ]
    deployment = example_resources[("Deployment", "web")]
    assert deployment["metadata"]["namespace"] == "shop"
    assert deployment["spec"]["replicas"] == 3  # the stack doc overrides the Pulumi.yaml default of 2
    pod = deployment["spec"]["template"]["spec"]
    assert "hostNetwork" not in pod and all("hostPort" not in p for p in pod["containers"][0]["ports"])
    assert pod["containers"][0]["image"] == "ghcr.io/stefanprodan/podinfo:6.6.2"
    assert example_resources[("Service", "web")]["spec"]["type"] == "ClusterIP"
    ingress = example_resources[("Ingress", "web")]["spec"]
    assert ingress["ingressClassName"] == "nginx" and ingress["rules"][0]["host"] == "shop.test"
    chart = example_resources[("Chart", "cache")]
    assert (chart["chart"], chart["version"], chart["namespace"]) == ("podinfo", "6.6.2", "shop")
    assert chart["values"]["service"] == {"type": "ClusterIP"}


def test_the_example_pins_the_projects_versions_so_its_venv_is_the_projects():
    assert requirement_lines((EXAMPLE / "requirements.txt").read_text()) == {
        "pulumi==3.272.0",
        "pulumi-kubernetes==4.34.2",
    }
    chosen = choose_interpreter(EXAMPLE, Path("/nonexistent-cache"), Path("/project/python"))
    assert chosen == Interpreter(Path("/project/python"), EXAMPLE / "requirements.txt")


# --- bad input and --debug, in-process (no program run needed, except --debug) ---------------------


def test_debug_prints_the_programs_traceback(raising_app):
    code, out, err = in_process(str(raising_app), "--debug")
    assert code == exit_codes.INTERNAL and out == ""
    assert "Traceback (most recent call last)" in err
    assert 'raise RuntimeError("no database URL for this stack")' in err


def test_a_folder_without_pulumi_yaml_is_bad_input(tmp_path):
    code, _, err = in_process(str(tmp_path))
    assert code == exit_codes.INPUT
    assert err == f"check-app: no Pulumi.yaml in {tmp_path}: not a Pulumi project folder\n"


def test_bad_yaml_names_the_file_and_line(tmp_path):
    (tmp_path / "Pulumi.yaml").write_text("name: app\nruntime: python\nconfig:\n\tkey: 1\n")
    code, _, err = in_process(str(tmp_path))
    assert code == exit_codes.INPUT
    assert err.startswith(f"check-app: {tmp_path}/Pulumi.yaml:4:1: invalid YAML: found character '\\t'")


def test_bad_yaml_in_the_stack_file_names_it(tmp_path):
    shutil.copytree(EXAMPLE, tmp_path / "app")
    (tmp_path / "app" / "Pulumi.dev.yaml").write_text("config:\n  shop-web:host: [a\n")
    code, _, err = in_process(str(tmp_path / "app"))
    assert code == exit_codes.INPUT and f"{tmp_path}/app/Pulumi.dev.yaml:3:1: invalid YAML" in err


def test_a_runtime_other_than_python_is_refused(tmp_path):
    (tmp_path / "Pulumi.yaml").write_text("name: app\nruntime: nodejs\n")
    code, _, err = in_process(str(tmp_path))
    assert code == exit_codes.INPUT and "runtime 'nodejs': check-app runs Python programs only" in err


def test_a_missing_required_config_key_is_bad_input_not_a_crash(tmp_path):
    shutil.copytree(EXAMPLE, tmp_path / "app")
    (tmp_path / "app" / "Pulumi.dev.yaml").unlink()
    code, _, err = in_process(str(tmp_path / "app"))
    assert code == exit_codes.INPUT
    assert "check-app: the stack's config: ConfigMissingError: Missing required configuration variable " in err
    assert "'shop-web:host'" in err


@pytest.mark.parametrize(
    ("policy_config", "message"),
    [
        ('{"no-host-netwrk": "advisory"}', "unknown policies in config: no-host-netwrk"),
        ('{\n  "all": "advisory",\n}\n', "config.json:3:1: invalid JSON"),
    ],
)
def test_a_bad_policy_config_is_bad_input(tmp_path, policy_config, message):
    (tmp_path / "config.json").write_text(policy_config)
    code, _, err = in_process(str(EXAMPLE), "--policy-config", str(tmp_path / "config.json"))
    assert code == exit_codes.INPUT and message in err


def test_a_missing_stack_file_is_bad_input(tmp_path):
    code, _, err = in_process(str(EXAMPLE), "--stack-file", str(tmp_path / "nope.yaml"))
    assert (code, err) == (exit_codes.INPUT, f"check-app: no such stack file: {tmp_path / 'nope.yaml'}\n")


def test_several_stack_files_need_a_choice(tmp_path):
    shutil.copytree(EXAMPLE, tmp_path / "app")
    shutil.copy(tmp_path / "app" / "Pulumi.dev.yaml", tmp_path / "app" / "Pulumi.prod.yaml")
    code, _, err = in_process(str(tmp_path / "app"))
    assert code == exit_codes.INPUT and "several stack files (dev, prod): choose one with --stack" in err


class ClosedPipe(io.StringIO):
    """A reader that went away after the first line, like `| head -1`."""

    def write(self, text: str) -> int:
        if self.getvalue():
            raise BrokenPipeError(32, "Broken pipe")
        return super().write(text)


def test_a_closed_pipe_keeps_the_verdicts_exit_code_and_prints_no_traceback(bad_app):
    out, err = ClosedPipe(), io.StringIO()
    assert main([str(bad_app)], out, err) == exit_codes.POLICY
    assert out.getvalue().startswith("check-app ") and err.getvalue() == ""


# --- deciding: project file, config, stack, interpreter --------------------------------------------


def test_read_project_takes_short_and_long_form_defaults_and_qualifies_keys(tmp_path):
    doc = {
        "name": "app",
        "runtime": {"name": "python", "options": {"virtualenv": "venv"}},
        "main": "src/",
        "config": {
            "replicas": {"type": "integer", "default": 2},
            "host": {"type": "string"},
            "color": "blue",
            "kubernetes:namespace": {"value": "shop"},
            "team": {"owner": "web"},  # an object value in short form, not a long-form entry
        },
    }
    project = read_project(doc, tmp_path)
    assert project == AppProject(
        tmp_path,
        "app",
        "python",
        tmp_path / "src/",
        {"app:replicas": 2, "app:color": "blue", "kubernetes:namespace": "shop", "app:team": {"owner": "web"}},
    )


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], "must be a mapping"),
        ({"runtime": "python"}, "no `name:`"),
        ({"name": "a"}, "no `runtime:`"),
        ({"name": "a", "runtime": "python", "config": ["x"]}, "`config:` must be a mapping"),
    ],
)
def test_read_project_refuses_shapes_the_cli_refuses(tmp_path, doc, message):
    with pytest.raises(ProjectError, match=message):
        read_project(doc, tmp_path)


def test_app_config_layers_the_stack_file_over_defaults_and_hides_secrets(tmp_path):
    project = AppProject(tmp_path, "app", "python", tmp_path, {"app:replicas": 2, "app:host": "a.example"})
    stack_doc = {"config": {"app:replicas": 3, "app:token": {"secure": "AAAA"}, "kubernetes:context": "prod"}}
    config, secrets = app_config(project, stack_doc)
    assert config == {
        "app:replicas": "3",
        "app:host": "a.example",
        "app:token": "mock-secret-value",
        "kubernetes:context": "prod",
    }
    assert secrets == ["app:token"]


def test_pick_stack_defaults_to_the_only_stack_file_else_dev(tmp_path):
    assert pick_stack(tmp_path, None, None) == ("dev", None)
    (tmp_path / "Pulumi.staging.yaml").write_text("config: {}\n")
    assert pick_stack(tmp_path, None, None) == ("staging", tmp_path / "Pulumi.staging.yaml")
    assert pick_stack(tmp_path, "prod", None) == ("prod", None)
    other = tmp_path / "ci.yaml"
    other.write_text("config: {}\n")
    assert pick_stack(tmp_path, "prod", other) == ("prod", other)


def test_requirement_lines_normalise_names_and_refuse_pip_options():
    assert requirement_lines("Pulumi_Kubernetes == 4.34.2  # why\n\npulumi==3.272.0\n") == {
        "pulumi-kubernetes==4.34.2",
        "pulumi==3.272.0",
    }
    assert requirement_lines("-r other.txt\npulumi==3.272.0\n") is None


def test_without_requirements_the_packs_are_used_and_the_project_venv_has_them(tmp_path):
    chosen = choose_interpreter(tmp_path, tmp_path / "cache", Path("/project/python"))
    assert chosen == Interpreter(Path("/project/python"), PACK_REQUIREMENTS)


def test_requirements_the_project_does_not_pin_get_a_cached_venv_built_once(tmp_path):
    app, cache = tmp_path / "app", tmp_path / "cache"
    app.mkdir()
    (app / "requirements.txt").write_text("pulumi==3.272.0\nrequests==2.32.5\n")
    first = choose_interpreter(app, cache, Path("/project/python"))
    venv = first.build_venv
    assert venv is not None and venv.parent == cache / "venvs" and len(venv.name) == 16
    assert first.python == venv / "bin" / "python"
    (venv).mkdir(parents=True)
    (venv / ".complete").write_text("")
    assert choose_interpreter(app, cache, Path("/project/python")) == Interpreter(
        venv / "bin" / "python", app / "requirements.txt"
    )
    (app / "requirements.txt").write_text("pulumi==3.272.0\nrequests==2.32.4\n")
    assert choose_interpreter(app, cache, Path("/project/python")).build_venv != venv


def test_yaml_files_are_read_as_the_cli_reads_them_off_and_yes_stay_strings(tmp_path):
    from keybuzz.check_app import load_yaml

    (tmp_path / "Pulumi.yaml").write_text("name: app\nruntime: python\nconfig:\n  mode:\n    default: off\n")
    (tmp_path / "Pulumi.dev.yaml").write_text("config:\n  app:tls: yes\n  app:debug: true\n")
    project = read_project(load_yaml(tmp_path / "Pulumi.yaml"), tmp_path)
    config, _ = app_config(project, load_yaml(tmp_path / "Pulumi.dev.yaml"))
    assert config == {"app:mode": "off", "app:tls": "yes", "app:debug": "true"}


def test_the_example_keeps_zero_replicas_as_asked():
    request = {
        "dir": str(EXAMPLE),
        "project_file": str(EXAMPLE / "Pulumi.yaml"),
        "stack": "dev",
        "stack_doc": {"config": {"shop-web:host": "shop.test", "shop-web:replicas": 0}},
    }
    resources = run_in_child(Interpreter(Path(sys.executable), EXAMPLE / "requirements.txt"), request)
    (deployment,) = [r["inputs"] for r in resources if r["type"].endswith(":Deployment")]
    assert deployment["spec"]["replicas"] == 0
