"""The deployment files of ``deploy/`` parse, and every command their containers run is a
real ``plait`` command with real options (no container engine runs the files here, so
this is what keeps them from rotting as the command line changes)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from plait.cli import app

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S = DEPLOY / "k8s"


def _k8s_docs() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def _compose() -> dict[str, Any]:
    return dict(yaml.safe_load((DEPLOY / "docker-compose.yml").read_text()))


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc.get("spec", {}).get("template", {}).get("spec", {})
    return list(spec.get("containers", []))


def _commands() -> list[tuple[str, list[str]]]:
    """(where, argv after `plait`) for every Plait container of compose and Kubernetes."""
    found = [("Dockerfile CMD", _dockerfile_cmd())]
    for name, service in _compose()["services"].items():
        if name != "postgres":
            found.append((f"compose {name}", list(service["command"])))
    for doc in _k8s_docs():
        for c in _containers(doc):
            found.append((f"k8s {doc['metadata']['name']}/{c['name']}", list(c["args"])))
    return found


def _dockerfile() -> str:
    return (DEPLOY / "Dockerfile").read_text()


def _dockerfile_cmd() -> list[str]:
    line = re.search(r"^CMD (\[.*\])$", _dockerfile(), re.MULTILINE)
    assert line, "the Dockerfile has no exec-form CMD"
    return list(yaml.safe_load(line[1]))


@pytest.mark.parametrize(("where", "argv"), _commands(), ids=lambda x: str(x))
def test_each_container_runs_a_real_plait_command(where: str, argv: list[str]) -> None:
    # `--help` after the real arguments: an unknown command or option still fails
    result = CliRunner().invoke(app, [*argv, "--help"])
    assert result.exit_code == 0, f"{where}: plait {' '.join(argv)}: {result.output}"
    assert "Usage: plait" in result.output


def test_the_dockerfile_builds_a_wheel_and_runs_it_unprivileged() -> None:
    text = _dockerfile()
    stages = re.findall(r"^FROM (\S+) AS (\w+)$", text, re.MULTILINE)
    assert [name for _, name in stages] == ["build", "runtime"]
    assert "python -m build --wheel" in text
    assert "COPY --from=build /dist/" in text
    assert re.search(r"^USER 10001", text, re.MULTILINE)
    assert re.search(r'^ENTRYPOINT \["plait"\]$', text, re.MULTILINE)
    assert re.search(r"^HEALTHCHECK .*\n.*127\.0\.0\.1:8080/health", text, re.MULTILINE)
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    assert ignore[ignore.index("*") + 1 :][:3] == ["!pyproject.toml", "!README.md", "!src/"]


def test_compose_runs_postgres_api_scheduler_and_three_workers() -> None:
    services = _compose()["services"]
    assert {"postgres", "migrate", "api", "scheduler", "worker"} <= set(services)
    assert services["worker"]["deploy"]["replicas"] == 3
    assert "/ready" in " ".join(services["api"]["healthcheck"]["test"])
    for name in ("api", "scheduler", "worker", "migrate"):
        assert services[name]["env_file"] == ["plait.env"], name
    for name in ("api", "scheduler", "worker"):
        needs = services[name]["depends_on"]
        assert needs["migrate"]["condition"] == "service_completed_successfully", name
    for name in ("scheduler", "worker", "migrate"):
        assert services[name]["healthcheck"] == {"disable": True}, name
    example = (DEPLOY / "plait.env.example").read_text()
    for var in ("PLAIT_DATABASE_URL", "PLAIT_SECRET_KEY", "PLAIT_JWT_SECRET"):
        assert re.search(rf"^{var}=", example, re.MULTILINE), var


def test_kubernetes_manifests() -> None:
    docs = _k8s_docs()
    by_kind: dict[str, dict[str, dict[str, Any]]] = {}
    for doc in docs:
        assert {"apiVersion", "kind", "metadata"} <= set(doc), doc
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc
    deployments = by_kind["Deployment"]
    assert set(deployments) == {"plait-api", "plait-scheduler", "plait-worker"}
    assert deployments["plait-worker"]["spec"]["replicas"] == 3
    (api,) = _containers(deployments["plait-api"])
    assert api["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert api["livenessProbe"]["httpGet"]["path"] == "/health"
    service = by_kind["Service"]["plait-api"]
    assert (
        service["spec"]["selector"] == deployments["plait-api"]["spec"]["selector"]["matchLabels"]
    )
    configs, secrets = set(by_kind["ConfigMap"]), set(by_kind["Secret"])
    workloads = [*deployments.values(), *by_kind["Job"].values()]
    for doc in workloads:
        labels = doc["spec"]["template"]["metadata"]["labels"]
        match = doc["spec"].get("selector", {}).get("matchLabels", labels)
        assert match.items() <= labels.items(), doc["metadata"]["name"]
        for c in _containers(doc):
            assert c["image"] == "plait"
            assert {"requests", "limits"} <= set(c["resources"]), doc["metadata"]["name"]
            refs = c["envFrom"]
            assert {r["configMapRef"]["name"] for r in refs if "configMapRef" in r} <= configs
            assert {r["secretRef"]["name"] for r in refs if "secretRef" in r} <= secrets
        assert doc["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {
        "kustomization.yaml",
        "secret.example.yaml",
    }
