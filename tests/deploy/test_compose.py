"""docker-compose.yml, .env.example and the images compose builds that no other test covers.

No Docker engine runs here, so nothing is started. Instead:

- ``docker-compose config`` (Debian's docker-compose 1.29, installed by
  ``scripts/install-system-deps``) resolves the file with a ``.env`` made from ``.env.example``,
  for the default profiles, with ``zabbix`` added, and in real-Twilio mode;
- the file is validated against the Compose Specification's JSON schema, vendored in
  ``tests/deploy/data`` (see the README there);
- the resolved environment of each Yobidashi service is fed to its settings class;
- mounts, builds and env files must exist, and the Prometheus and Grafana files mounted must
  fit the stack (service names, ports, the dashboards path).

The images themselves: ``test_dockerfiles.py``; the stack running: ``test_compose_stack.py``.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from yobidashi_common.settings import ServiceSettings
from yobidashi_dialer.settings import DialerSettings
from yobidashi_testing.dockerfile import instructions
from yobidashi_testing.settings_catalog import SETTINGS, known_variables
from yobidashi_twilio_sim.settings import DEFAULT_AUTH_TOKEN, SimSettings
from yobidashi_zabbix_standin.settings import StandInSettings

Obj = dict[str, Any]

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
SCHEMA = Path(__file__).parent / "data" / "compose-spec.json"

# The stand-ins for the outside world: profile `sim`, built here, listening on all interfaces.
STANDINS = {"twilio-sim", "zabbix-standin"}
YOBIDASHI = {"ingest", "dialer", "acker", *STANDINS, "heartbeat"}
DEFAULT_SERVICES = {"nats", *YOBIDASHI, "prometheus", "grafana"}
ZABBIX_SERVICES = {"zabbix-db", "zabbix-server", "zabbix-web"}
# The secrets each service gets from .env, and nothing more.
SECRETS_PER_SERVICE = {
    "nats": set(),  # its token is on its command line
    "ingest": {"INGEST_TOKEN", "NATS_TOKEN"},
    "dialer": {"TWILIO_AUTH_TOKEN", "NATS_TOKEN"},
    "acker": {"ZABBIX_API_TOKEN", "NATS_TOKEN"},
    "twilio-sim": {"TWILIO_SIM_AUTH_TOKEN"},
    "zabbix-standin": {"ZABBIX_STANDIN_API_TOKEN"},
    "heartbeat": {"INGEST_TOKEN"},
    "prometheus": set(),
    "grafana": {"GF_SECURITY_ADMIN_PASSWORD"},
    "zabbix-db": {"POSTGRES_PASSWORD"},
    "zabbix-server": {"POSTGRES_PASSWORD"},
    "zabbix-web": {"POSTGRES_PASSWORD"},
}
SECRET_NAME = re.compile(r"TOKEN|PASSWORD|SECRET|_KEY$")
INTERPOLATION = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")
# Real Twilio: the three [sim] lines of .env.example changed together.
REAL_TWILIO = {
    "COMPOSE_PROFILES": "",
    "TWILIO_API_BASE_URL": "",
    "PUBLIC_BASE_URL": "https://oncall.example.com",
}


def parse_env_file(text: str) -> dict[str, str]:
    pairs = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"not KEY=value: {line!r}"
            pairs[key.strip()] = value
    return pairs


def raw_compose() -> Obj:
    data: Obj = yaml.safe_load(COMPOSE.read_text())  # anchors and merge keys resolved
    return data


def docker_compose() -> str:
    path = shutil.which("docker-compose")
    if path is None:
        pytest.skip("docker-compose is not installed (scripts/install-system-deps installs it)")
    return path


def compose_config(tmp: Path, overrides: dict[str, str], *profiles: str) -> Obj:
    """`docker-compose config` with .env = .env.example + overrides, in a clean environment."""
    env_file = tmp / ".env"
    values = {**parse_env_file(ENV_EXAMPLE.read_text()), **overrides}
    env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    command = [docker_compose(), "-f", str(COMPOSE), "--project-directory", str(REPO)]
    command += ["--env-file", str(env_file)]
    for profile in profiles:
        command += ["--profile", profile]
    result = subprocess.run(
        [*command, "config"],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp)},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    config: Obj = yaml.safe_load(result.stdout)
    # What `up` would start: docker-compose 1.29's `config` prints every service, so apply
    # its own rule: --profile replaces COMPOSE_PROFILES.
    active = set(profiles) or {p for p in values.get("COMPOSE_PROFILES", "").split(",") if p}
    config["x-active"] = sorted(
        name
        for name, service in config["services"].items()
        if not service.get("profiles") or active & set(service["profiles"])
    )
    return config


@pytest.fixture(scope="module")
def default_config(tmp_path_factory: pytest.TempPathFactory) -> Obj:
    return compose_config(tmp_path_factory.mktemp("default"), {})


@pytest.fixture(scope="module")
def zabbix_config(tmp_path_factory: pytest.TempPathFactory) -> Obj:
    return compose_config(tmp_path_factory.mktemp("zabbix"), {}, "sim", "zabbix")


@pytest.fixture(scope="module")
def twilio_config(tmp_path_factory: pytest.TempPathFactory) -> Obj:
    return compose_config(tmp_path_factory.mktemp("twilio"), REAL_TWILIO)


def container_port(service: Obj) -> int | None:
    """The port a service serves on, from its healthcheck URL."""
    test = " ".join(service.get("healthcheck", {}).get("test", []))
    match = re.search(r"https?://(?:127\.0\.0\.1|localhost):(\d+)/", test)
    return int(match.group(1)) if match else None


@contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    with mock.patch.dict(os.environ, env, clear=True):
        yield


def image_env(service: Obj) -> dict[str, str]:
    """ENV of the final stage of the Dockerfile a service is built from."""
    if "build" not in service:
        return {}
    build = service["build"]
    steps = instructions(Path(build["context"]) / build["dockerfile"], build.get("args") or {})
    final = steps[max(i for i, (k, _) in enumerate(steps) if k == "FROM") :]
    env: dict[str, str] = {}
    for keyword, value in final:
        if keyword == "ENV":
            for pair in value.split():
                key, _, setting = pair.partition("=")
                env[key] = setting
    env.pop("PATH", None)
    return env


def environment_of(service: Obj) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


# --- the file itself ------------------------------------------------------------------------


def test_the_file_matches_the_compose_specification_schema() -> None:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(raw_compose()), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_docker_compose_resolves_the_default_stack(default_config: Obj) -> None:
    assert set(default_config["x-active"]) == DEFAULT_SERVICES


def test_docker_compose_resolves_the_zabbix_profile(zabbix_config: Obj) -> None:
    assert set(zabbix_config["x-active"]) == DEFAULT_SERVICES | ZABBIX_SERVICES


def test_real_twilio_mode_drops_the_simulator_and_the_canary(twilio_config: Obj) -> None:
    assert set(twilio_config["x-active"]) == DEFAULT_SERVICES - {*STANDINS, "heartbeat"}
    dialer = environment_of(twilio_config["services"]["dialer"])
    with environment(dialer):
        settings = DialerSettings()
    assert not settings.twilio_api_base_url, "an empty value means api.twilio.com"


def test_every_service_has_a_healthcheck(default_config: Obj) -> None:
    for config in (raw_compose(), default_config):
        for name, service in config["services"].items():
            check = service.get("healthcheck")
            assert check, f"{name} has no healthcheck"
            assert not check.get("disable")
            assert check["test"][0] in {"CMD", "CMD-SHELL"}, name


def test_dependencies_wait_until_healthy(zabbix_config: Obj, default_config: Obj) -> None:
    services = raw_compose()["services"]
    for name, service in services.items():
        for target, condition in (service.get("depends_on") or {}).items():
            assert condition == {"condition": "service_healthy"}, f"{name} -> {target}"
            assert services[target].get("healthcheck"), f"{target} has no healthcheck"
            # Whenever the dependent runs, what it waits for runs too.
            needs = set(services[target].get("profiles", []))
            has = set(service.get("profiles", []))
            assert not needs or (has and has <= needs), f"{name} -> {target}: profiles"
    for name in ("ingest", "dialer", "acker"):
        assert "nats" in services[name]["depends_on"]
    for config in (default_config, zabbix_config):
        for name in config["x-active"]:
            for target in config["services"][name].get("depends_on", {}):
                assert target in config["x-active"]


def test_no_secret_is_written_in_the_file() -> None:
    text = COMPOSE.read_text()
    example = parse_env_file(ENV_EXAMPLE.read_text())
    for key, value in example.items():
        if SECRET_NAME.search(key) and value:
            assert value not in text, f"the value of {key} is written in docker-compose.yml"
    for name, service in raw_compose()["services"].items():
        for key, value in environment_of(service).items():
            if SECRET_NAME.search(key):
                match = INTERPOLATION.fullmatch(value)
                assert match, f"{name}: {key} must come from .env"
                assert match.group(2) == ":?", f"{name}: {key} must be required (${{X:?...}})"
        command = service.get("command") or []
        for flag, value in itertools.pairwise(command):
            if flag in {"--auth", "--pass", "--password", "--user"}:
                assert INTERPOLATION.fullmatch(value), f"{name}: {flag} from .env"


def test_secrets_reach_only_the_services_that_use_them(zabbix_config: Obj) -> None:
    for name, service in zabbix_config["services"].items():
        secrets = {k for k in environment_of(service) if SECRET_NAME.search(k)}
        assert secrets == SECRETS_PER_SERVICE[name], name
        assert "env_file" not in service or all(
            not SECRET_NAME.search(k)
            for f in service["env_file"]
            for k in parse_env_file(Path(f).read_text())
        )


def strings(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)
    elif isinstance(node, str):
        yield node


def test_env_example_documents_every_variable_and_sets_the_required_ones() -> None:
    example = parse_env_file(ENV_EXAMPLE.read_text())
    found = [m for text in strings(raw_compose()) for m in INTERPOLATION.finditer(text)]
    used = {m.group(1) for m in found}
    required = {m.group(1) for m in found if m.group(2) == ":?"}
    assert used - set(example) == set(), "variables docker-compose.yml reads but .env.example lacks"
    assert set(example) - used == {"COMPOSE_PROFILES"}, ".env.example sets unused variables"
    for name in required:
        assert example[name], f"{name} is required but empty in .env.example"
    # Every secret placeholder is visibly one (or the simulator's public test value).
    for key, value in example.items():
        if SECRET_NAME.search(key):
            assert value.startswith("dev-only-") or value == DEFAULT_AUTH_TOKEN, key


def test_every_path_compose_reads_exists(zabbix_config: Obj) -> None:
    for name, service in zabbix_config["services"].items():
        if "build" in service:
            context = Path(service["build"]["context"])
            assert context == REPO
            assert (context / service["build"]["dockerfile"]).is_file(), name
        for env_file in service.get("env_file", []):
            assert Path(env_file).is_file(), f"{name}: {env_file}"
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume["source"]
            if source.startswith("/"):
                assert Path(source).exists(), f"{name} mounts {source}, which does not exist"
                assert Path(source).resolve().is_relative_to(REPO), f"{name}: {source}"
    for env_file in raw_compose()["services"]["ingest"].get("env_file", []):
        assert (REPO / env_file).is_file()
    # The files those mounts are for.
    for path in (
        "deploy/prometheus/prometheus.yml",
        "deploy/prometheus/rules.yml",
        "deploy/grafana/provisioning/datasources",
        "deploy/grafana/provisioning/dashboards",
        "deploy/grafana/dashboards/yobidashi.json",
        "deploy/compose/oncall/oncall.yaml",
    ):
        assert (REPO / path).exists(), f"{path} is mounted but missing"


def mounts(service: Obj) -> dict[str, Path]:
    """Container path -> host path, for bind mounts."""
    out = {}
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":")
        if source.startswith("/"):
            out[target] = Path(source)
    return out


def test_prometheus_and_grafana_files_fit_the_stack(default_config: Obj) -> None:
    services = default_config["services"]
    # Prometheus: its config and rules are where the command line and rule_files say.
    prometheus = services["prometheus"]
    (config_flag,) = [c for c in prometheus["command"] if c.startswith("--config.file=")]
    config_path = Path(config_flag.split("=", 1)[1])
    host_dir = mounts(prometheus)[str(config_path.parent)]
    config = yaml.safe_load((host_dir / config_path.name).read_text())
    for rule_file in config.get("rule_files", []):
        assert list(host_dir.glob(rule_file)), f"rule file {rule_file} is not in the mount"
    # Every scrape target that is a compose service is one that runs, on its port.
    targets = [
        target
        for job in config["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    ]
    scraped = set()
    for target in targets:
        host, port = target.rsplit(":", 1)
        if host == "localhost":
            continue
        assert host in default_config["x-active"], f"Prometheus scrapes {target}: no such service"
        assert container_port(services[host]) == int(port), target
        scraped.add(host)
    assert {"ingest", "dialer", "acker"} <= scraped
    # Grafana: the data source points at the Prometheus service; the dashboards provider reads
    # the directory the dashboards are mounted at.
    grafana = mounts(services["grafana"])
    provisioning = grafana["/etc/grafana/provisioning"]
    for path in (provisioning / "datasources").glob("*.y*ml"):
        for source in yaml.safe_load(path.read_text()).get("datasources", []):
            url = urlsplit(source["url"])
            assert url.hostname in default_config["x-active"], source["url"]
            assert url.port == container_port(services[str(url.hostname)])
    providers = [
        provider
        for path in (provisioning / "dashboards").glob("*.y*ml")
        for provider in yaml.safe_load(path.read_text()).get("providers", [])
    ]
    assert providers
    for provider in providers:
        path = provider["options"]["path"]
        assert path in grafana, f"dashboards provider reads {path}, which is not mounted"
        assert list(grafana[path].glob("*.json")), f"no dashboard JSON under {path}"


def test_each_yobidashi_service_starts_with_its_compose_environment(default_config: Obj) -> None:
    known = known_variables()
    services = default_config["services"]
    for name, cls in SETTINGS.items():
        env = environment_of(services[name])
        assert set(env) <= known, f"{name}: variables no settings class reads: {set(env) - known}"
        with environment({**image_env(services[name]), **env}):
            settings = cls()
        if isinstance(settings, ServiceSettings):
            assert container_port(services[name]) == settings.port, name
            assert settings.nats_token is not None, f"{name} would connect without the token"
        if isinstance(settings, SimSettings | StandInSettings):
            assert settings.host == "0.0.0.0", f"{name} must listen on all interfaces"
            assert container_port(services[name]) == settings.port
    # Optional extra settings files only name real variables.
    for name in ("ingest", "dialer", "acker"):
        text = (REPO / "deploy" / "compose" / f"{name}.env").read_text()
        for line in text.splitlines():
            if match := re.fullmatch(r"#? ?([A-Z][A-Z0-9_]+)=.*", line):
                assert match.group(1) in known, f"{name}.env: {match.group(1)}"


def test_the_simulator_profile_is_wired_to_the_dialer(default_config: Obj) -> None:
    example = parse_env_file(ENV_EXAMPLE.read_text())
    assert "sim" in example["COMPOSE_PROFILES"].split(",")
    services = default_config["services"]
    dialer = environment_of(services["dialer"])
    sim = environment_of(services["twilio-sim"])
    api = urlsplit(dialer["TWILIO_API_BASE_URL"])
    assert (api.hostname, api.port) == ("twilio-sim", container_port(services["twilio-sim"]))
    public = urlsplit(dialer["PUBLIC_BASE_URL"])
    assert (public.hostname, public.port) == ("dialer", container_port(services["dialer"]))
    assert sim["TWILIO_SIM_ACCOUNT_SID"] == dialer["TWILIO_ACCOUNT_SID"]
    assert sim["TWILIO_SIM_AUTH_TOKEN"] == dialer["TWILIO_AUTH_TOKEN"]


def test_images_are_pinned() -> None:
    for name, service in raw_compose()["services"].items():
        image = service["image"]
        if "build" in service:
            assert image.endswith(":local"), f"{name}: built locally, tagged :local"
            continue
        _, _, tag = image.rpartition(":")
        assert re.search(r"\d", tag), f"{name}: {image} is not pinned to a version"


def test_yobidashi_containers_are_locked_down() -> None:
    services = raw_compose()["services"]
    for name in YOBIDASHI:
        service = services[name]
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert "/tmp" in service["tmpfs"], name
        assert "user" not in service, f"{name}: the image's non-root user applies"
        assert not service.get("privileged")


def test_published_ports_stay_on_loopback_by_default(default_config: Obj) -> None:
    for name, service in default_config["services"].items():
        for port in service.get("ports", []):
            published = port if isinstance(port, str) else port.get("host_ip", "")
            assert str(published).startswith("127.0.0.1:"), f"{name}: {port}"


def test_ingest_knows_the_ackers_updates_by_the_ackers_username(default_config: Obj) -> None:
    services = default_config["services"]
    ingest, acker = environment_of(services["ingest"]), environment_of(services["acker"])
    assert ingest["ZABBIX_OWN_USERS"] == acker["ZABBIX_USER"]
