"""The Kubernetes manifests, the compose file and prometheus.yml agree with the image.

The manifests are checked against Kubernetes' own OpenAPI schemas (bundled by
kubernetes-validate, strict: unknown fields fail), then for what the schemas
cannot know: the container runs the image's exact command, readiness is
/ready, the grace period covers --shutdown-delay + --drain-timeout, the policy
ConfigMap is mounted as a folder (a subPath mount never sees updates) and holds
the shipped policy, and names and ports line up between objects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy.conftest import DEPLOY, IMAGE_POLICY_DIR, flag, image_command

KUBERNETES = DEPLOY / "kubernetes"


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def resources() -> dict[tuple[str, str], dict[str, Any]]:
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for name in kustomization["resources"]:
        for doc in documents(KUBERNETES / name):
            found[(doc["kind"], doc["metadata"]["name"])] = doc
    return found


def grace_needed(command: list[str]) -> float:
    return float(flag(command, "--shutdown-delay")) + float(flag(command, "--drain-timeout"))


def test_every_manifest_is_in_the_kustomization() -> None:
    listed = set(yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())["resources"])
    on_disk = {p.name for p in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk


@pytest.mark.parametrize("key", sorted(resources()), ids=lambda key: "/".join(key))
def test_manifest_passes_the_kubernetes_schema(key: tuple[str, str]) -> None:
    kubernetes_validate.validate(
        resources()[key], kubernetes_validate.latest_version(), strict=True
    )


def test_the_schema_check_can_fail() -> None:
    service = resources()[("Service", "turnout")]
    broken = {**service, "spec": {**service["spec"], "ports": [{"port": "http"}]}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, kubernetes_validate.latest_version(), strict=True)


def gateway_pod() -> dict[str, Any]:
    spec: dict[str, Any] = resources()[("Deployment", "turnout")]["spec"]["template"]["spec"]
    return spec


def test_the_deployment_runs_the_image_command_with_readiness_and_a_matching_grace() -> None:
    deployment = resources()[("Deployment", "turnout")]
    assert deployment["spec"]["replicas"] >= 2
    pod = gateway_pod()
    (container,) = pod["containers"]
    assert ["turnout", *container["args"]] == image_command()
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert pod["terminationGracePeriodSeconds"] > grace_needed(image_command())
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_the_policy_comes_from_the_configmap_as_a_watched_folder() -> None:
    pod = gateway_pod()
    (container,) = pod["containers"]
    config = flag(container["args"], "--config")
    assert "--no-watch" not in container["args"]
    (mount,) = [m for m in container["volumeMounts"] if config.startswith(m["mountPath"] + "/")]
    assert mount["mountPath"] == IMAGE_POLICY_DIR and "subPath" not in mount
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    configmap = resources()[("ConfigMap", volume["configMap"]["name"])]
    filename = config.rsplit("/", 1)[1]
    assert configmap["data"][filename] == (DEPLOY / "policy" / "routes.yaml").read_text()


def test_redis_is_the_shared_state_and_the_services_line_up() -> None:
    found = resources()
    (container,) = gateway_pod()["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert "REDIS_URL" in (DEPLOY / "policy" / "routes.yaml").read_text()
    host, port = env["REDIS_URL"].removeprefix("redis://").split("/")[0].split(":")
    redis_service = found[("Service", host)]
    assert [p["port"] for p in redis_service["spec"]["ports"]] == [int(port)]
    for service_name, deployment_name in (("turnout", "turnout"), (host, "turnout-redis")):
        service = found[("Service", service_name)]
        template = found[("Deployment", deployment_name)]["spec"]["template"]
        assert service["spec"]["selector"].items() <= template["metadata"]["labels"].items()
        port_names = {p["name"] for c in template["spec"]["containers"] for p in c["ports"]}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names


def test_compose_runs_two_gateways_redis_and_prometheus_scraping_both() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())  # resolves the << merges
    services = compose["services"]
    gateways = {name: s for name, s in services.items() if s.get("image") == "turnout:local"}
    assert len(gateways) == 2 and {"redis", "prometheus"} <= set(services)
    for gateway in gateways.values():
        assert (DEPLOY / gateway["build"]["context"] / gateway["build"]["dockerfile"]).is_file()
        assert gateway["environment"]["REDIS_URL"].startswith("redis://redis:")
        source, target, _ = gateway["volumes"][0].split(":")
        assert target == IMAGE_POLICY_DIR and (DEPLOY / source / "routes.yaml").is_file()
        assert float(gateway["stop_grace_period"].rstrip("s")) > grace_needed(image_command())
    for service in services.values():
        for volume in service.get("volumes", []):
            assert (DEPLOY / volume.split(":")[0]).exists(), volume
    prometheus = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    targets = {
        t
        for job in prometheus["scrape_configs"]
        for c in job["static_configs"]
        for t in c["targets"]
    }
    port = flag(image_command(), "--port")
    assert targets == {f"{name}:{port}" for name in gateways}
