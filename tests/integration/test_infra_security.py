"""Security checks over the *resolved* deployment definitions, and the proof that they bite.

Terraform: for each environment root, ``terraform test -filter=tests/security.tftest.hcl -json
-verbose`` plans the root with the shared mocked AWS provider (offline) and prints the plan as JSON
(the ``test_plan`` message: the ``resource_changes`` of ``terraform show -json``). The checks read
the planned resources, after Terraform has resolved every variable, local, ``for_each`` and module
call, so a value that reaches an attribute indirectly is seen as well as a literal one:

* MSK: TLS client-broker and in-cluster, a KMS key at rest, no unauthenticated or public access.
* ElastiCache: encryption at rest (KMS) and in transit (mode ``required``), an AUTH token.
* RDS: storage encrypted (KMS), ``rds.force_ssl`` in its parameter group, not public, deletion
  protection, automated backups (at least 7 days in prod) and a final snapshot on the primary.
* EBS: every volume, launch-template disk and EC2 disk encrypted; node groups on launch templates;
  EKS secrets envelope-encrypted.
* No ingress rule (``aws_vpc_security_group_ingress_rule``, ``aws_security_group_rule`` or an
  inline ``ingress`` block) opens a Kafka, Redis, PostgreSQL or ClickHouse port to ``0.0.0.0/0``,
  ``::/0`` or any other public CIDR.

Compose: every published port is bound to 127.0.0.1, no host networking or privileged services,
and Redis, PostgreSQL and ClickHouse require passwords.

The fixture-copy tests copy the trees to a temporary directory, break one thing at a time
(``storage_encrypted = false``; PostgreSQL opened to 0.0.0.0/0; Redis TLS off; prod deletion
protection off; a data port published on all interfaces; Redis AUTH removed) and assert that the
checks fail on each copy, while the real trees pass. Everything skips with a message where
terraform, the provider mirror or the Compose binary is absent.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_infra import (
    COMPOSE_DIR,
    ENVS,
    REPO,
    TERRAFORM_DIR,
    TF_TIMEOUT_S,
    _base_env,
    _compose_binary,
    _compose_env,
    _provider_mirror,
    _run,
    _terraform,
)

SECURITY_TEST_FILE = "tests/security.tftest.hcl"
SECURITY_RUN = "security_plan"

# The ports of the data services (any of them reachable from a public CIDR is a finding).
DATA_PORTS: dict[str, tuple[int, ...]] = {
    "Kafka": (9092, 9094, 9096, 9098),
    "Redis": (6379,),
    "PostgreSQL": (5432,),
    "ClickHouse": (8123, 8443, 9000, 9009, 9181, 9234, 9440),
}
ALL_DATA_PORTS = sorted({p for ports in DATA_PORTS.values() for p in ports})
MIN_PROD_BACKUP_DAYS = 7


# ---------------------------------------------------------------------------------------------
# The planned resources
# ---------------------------------------------------------------------------------------------
def _get(tree: Any, *path: str | int) -> Any:
    for key in path:
        if isinstance(tree, dict) and isinstance(key, str):
            tree = tree.get(key)
        elif isinstance(tree, list) and isinstance(key, int) and -len(tree) <= key < len(tree):
            tree = tree[key]
        else:
            return None
        if tree is None:
            return None
    return tree


@dataclass(frozen=True)
class Planned:
    """One managed resource of the plan: its values after the change, and which are unknown until
    apply (computed, e.g. the ARN of a KMS key created in the same plan)."""

    address: str
    type: str
    after: dict[str, Any]
    unknown: dict[str, Any]

    def value(self, *path: str | int) -> Any:
        return _get(self.after, *path)

    def is_unknown(self, *path: str | int) -> bool:
        return _get(self.unknown, *path) is True

    def is_set(self, *path: str | int) -> bool:
        """Set to a value, or to a reference that apply resolves (unknown in the plan)."""
        return self.value(*path) not in (None, "", [], {}) or self.is_unknown(*path)

    def blocks(self, *path: str | int) -> list[tuple[int, dict[str, Any]]]:
        found = self.value(*path)
        return list(enumerate(found)) if isinstance(found, list) else []


def _true(value: Any) -> bool:
    return value is True or value == "true"


def planned_resources(plan: dict[str, Any]) -> list[Planned]:
    resources = []
    for change in plan.get("resource_changes", []):
        actions = change["change"]["actions"]
        if change.get("mode") != "managed" or actions == ["delete"]:
            continue
        resources.append(
            Planned(
                change["address"],
                change["type"],
                change["change"].get("after") or {},
                change["change"].get("after_unknown") or {},
            )
        )
    return resources


def _public_cidr(cidr: str) -> bool:
    """0.0.0.0/0, ::/0, or any network that is not private address space."""
    network = ipaddress.ip_network(cidr, strict=False)
    return network.prefixlen == 0 or not network.is_private


def _data_ports_in(protocol: Any, from_port: Any, to_port: Any) -> list[int]:
    proto = str(protocol).lower()
    if proto in ("-1", "all"):
        return ALL_DATA_PORTS
    if proto not in ("tcp", "6"):
        return []
    if from_port is None or to_port is None or int(from_port) < 0:
        return ALL_DATA_PORTS
    return [p for p in ALL_DATA_PORTS if int(from_port) <= p <= int(to_port)]


def _ingress_findings(where: str, cidrs: list[Any], unknown: bool, ports: list[int]) -> list[str]:
    if not ports:
        return []
    if unknown:
        return [f"{where}: ingress to data port(s) {ports} from a CIDR unknown at plan time"]
    public = [c for c in cidrs if isinstance(c, str) and _public_cidr(c)]
    if public:
        return [f"{where}: ingress to data port(s) {ports} from public CIDR(s) {public}"]
    return []


def ingress_violations(resources: list[Planned]) -> list[str]:
    """World-open (or public) ingress to a data-service port, in every form the provider has."""
    out: list[str] = []
    for r in resources:
        if r.type == "aws_vpc_security_group_ingress_rule":
            ports = _data_ports_in(r.value("ip_protocol"), r.value("from_port"), r.value("to_port"))
            cidrs = [r.value("cidr_ipv4"), r.value("cidr_ipv6")]
            unknown = r.is_unknown("cidr_ipv4") or r.is_unknown("cidr_ipv6")
            out += _ingress_findings(r.address, cidrs, unknown, ports)
        elif r.type == "aws_security_group_rule" and r.value("type") == "ingress":
            ports = _data_ports_in(r.value("protocol"), r.value("from_port"), r.value("to_port"))
            cidrs = [*(r.value("cidr_blocks") or []), *(r.value("ipv6_cidr_blocks") or [])]
            unknown = r.is_unknown("cidr_blocks") or r.is_unknown("ipv6_cidr_blocks")
            out += _ingress_findings(r.address, cidrs, unknown, ports)
        elif r.type in ("aws_security_group", "aws_default_security_group"):
            # Inline rules: an unknown `ingress` means none are configured (computed from others).
            for i, rule in r.blocks("ingress"):
                ports = _data_ports_in(rule.get("protocol"), rule.get("from_port"), rule.get("to_port"))
                cidrs = [*(rule.get("cidr_blocks") or []), *(rule.get("ipv6_cidr_blocks") or [])]
                unknown = r.is_unknown("ingress", i, "cidr_blocks")
                out += _ingress_findings(f"{r.address} ingress[{i}]", cidrs, unknown, ports)
    return out


def _msk(r: Planned) -> list[str]:
    out = []
    transit = ("encryption_info", 0, "encryption_in_transit", 0)
    if r.value(*transit, "client_broker") != "TLS":
        out.append("client_broker encryption in transit must be TLS")
    if not _true(r.value(*transit, "in_cluster")):
        out.append("in_cluster encryption in transit must be on")
    if not r.is_set("encryption_info", 0, "encryption_at_rest_kms_key_arn"):
        out.append("encryption at rest needs a customer-managed KMS key (encryption_at_rest_kms_key_arn)")
    if r.value("client_authentication", 0, "unauthenticated") is not False:
        out.append("client_authentication.unauthenticated must be false")
    if not (
        _true(r.value("client_authentication", 0, "sasl", 0, "scram"))
        or _true(r.value("client_authentication", 0, "sasl", 0, "iam"))
    ):
        out.append("SASL/SCRAM or IAM authentication must be on")
    public = r.value("broker_node_group_info", 0, "connectivity_info", 0, "public_access", 0, "type")
    if public not in (None, "DISABLED"):
        out.append(f"public access must be DISABLED, not {public!r}")
    return out


def _redis(r: Planned) -> list[str]:
    out = []
    if not _true(r.value("at_rest_encryption_enabled")):
        out.append("at_rest_encryption_enabled must be true")
    if not r.is_set("kms_key_id"):
        out.append("encryption at rest needs a customer-managed KMS key (kms_key_id)")
    if not _true(r.value("transit_encryption_enabled")):
        out.append("transit_encryption_enabled (TLS) must be true")
    if r.value("transit_encryption_mode") not in (None, "required"):
        out.append(f"transit_encryption_mode must be required, not {r.value('transit_encryption_mode')!r}")
    if not r.is_set("auth_token") and not r.is_set("user_group_ids"):
        out.append("Redis AUTH needs an auth_token (or RBAC user groups)")
    return out


def _rds(r: Planned, env: str) -> list[str]:
    out = []
    if not _true(r.value("storage_encrypted")):
        out.append("storage_encrypted must be true")
    if not r.is_set("kms_key_id"):
        out.append("storage encryption needs a customer-managed KMS key (kms_key_id)")
    if r.value("publicly_accessible") is not False:
        out.append("publicly_accessible must be false")
    if not _true(r.value("deletion_protection")):
        out.append("deletion_protection must be true")
    if not r.is_set("parameter_group_name"):
        out.append("needs the project's parameter group (rds.force_ssl), not the default one")
    if r.type == "aws_db_instance" and r.value("replicate_source_db") is None:
        days = r.value("backup_retention_period")
        floor = MIN_PROD_BACKUP_DAYS if env == "prod" else 1
        if not isinstance(days, int) or days < floor:
            out.append(f"automated backups must be kept >= {floor} days (backup_retention_period={days})")
        if r.value("skip_final_snapshot") is not False:
            out.append("skip_final_snapshot must be false on the primary")
    return out


def _parameter_group(r: Planned) -> list[str]:
    params = {p.get("name"): p.get("value") for _, p in r.blocks("parameter")}
    if str(params.get("rds.force_ssl")) != "1":
        return ["rds.force_ssl must be 1 (TLS in transit)"]
    return []


def _ebs(r: Planned) -> list[str]:
    out = []
    if r.type == "aws_ebs_volume":
        if not _true(r.value("encrypted")):
            out.append("encrypted must be true")
        if not r.is_set("kms_key_id"):
            out.append("needs a customer-managed KMS key (kms_key_id)")
    elif r.type == "aws_launch_template":
        for i, mapping in r.blocks("block_device_mappings"):
            for ebs in mapping.get("ebs") or []:
                if not _true(ebs.get("encrypted")):
                    out.append(f"block_device_mappings[{i}] ({mapping.get('device_name')}) must be encrypted")
    elif r.type == "aws_instance":
        for block in ("root_block_device", "ebs_block_device"):
            for i, disk in r.blocks(block):
                if not _true(disk.get("encrypted")):
                    out.append(f"{block}[{i}] must be encrypted")
    elif r.type == "aws_eks_node_group":
        if not r.is_set("launch_template"):
            out.append("node group without a launch template: its disks would not be encrypted with our key")
    elif r.type == "aws_eks_cluster":
        resources = [res for _, c in r.blocks("encryption_config") for res in c.get("resources") or []]
        if "secrets" not in resources:
            out.append("Kubernetes secrets must be envelope-encrypted (encryption_config)")
        if _true(r.value("vpc_config", 0, "endpoint_public_access")):
            cidrs = r.value("vpc_config", 0, "public_access_cidrs") or ["0.0.0.0/0"]
            if any(_public_cidr(c) and ipaddress.ip_network(c).prefixlen == 0 for c in cidrs):
                out.append("the public API endpoint must not be open to 0.0.0.0/0")
    return out


def _outputs(plan: dict[str, Any]) -> list[str]:
    env = _get(plan, "output_changes", "stockpulse_env", "after") or {}
    out = []
    if env.get("STOCKPULSE_KAFKA__SECURITY_PROTOCOL") != "SASL_SSL":
        out.append("output stockpulse_env: STOCKPULSE_KAFKA__SECURITY_PROTOCOL must be SASL_SSL")
    if env.get("STOCKPULSE_REDIS__SSL") != "true":
        out.append("output stockpulse_env: STOCKPULSE_REDIS__SSL must be true")
    return out


REQUIRED_TYPES = (
    "aws_msk_cluster",
    "aws_elasticache_replication_group",
    "aws_db_instance",
    "aws_db_parameter_group",
    "aws_ebs_volume",
    "aws_launch_template",
    "aws_vpc_security_group_ingress_rule",
)


def terraform_violations(plan: dict[str, Any], env: str) -> list[str]:
    """Every security finding of one planned environment root (empty: all checks pass)."""
    resources = planned_resources(plan)
    types = {r.type for r in resources}
    out = [f"the plan has no {t}: the checks would pass vacuously" for t in REQUIRED_TYPES if t not in types]
    for r in resources:
        found: list[str] = []
        if r.type == "aws_msk_cluster":
            found = _msk(r)
        elif r.type == "aws_elasticache_replication_group":
            found = _redis(r)
        elif r.type in ("aws_db_instance", "aws_rds_cluster"):
            found = _rds(r, env)
        elif r.type in ("aws_db_parameter_group", "aws_rds_cluster_parameter_group"):
            found = _parameter_group(r)
        else:
            found = _ebs(r)
        out += [f"{r.address}: {f}" for f in found]
    out += ingress_violations(resources)
    out += _outputs(plan)
    return out


# ---------------------------------------------------------------------------------------------
# Running the mocked plan
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PlanRun:
    plan: dict[str, Any] | None
    errors: list[str]
    output: str


def security_plan(env_dir: Path, env: dict[str, str]) -> PlanRun:
    """The mocked plan of tests/security.tftest.hcl with the root's terraform.tfvars.example."""
    cmd = [
        env["TERRAFORM_BIN"],
        "test",
        "-no-color",
        "-json",
        "-verbose",
        f"-filter={SECURITY_TEST_FILE}",
        "-var-file=terraform.tfvars.example",
    ]
    proc = subprocess.run(cmd, cwd=env_dir, env=env, capture_output=True, text=True, timeout=TF_TIMEOUT_S)
    plan: dict[str, Any] | None = None
    errors: list[str] = []
    for line in proc.stdout.splitlines():
        if not line.startswith("{"):
            continue
        message = json.loads(line)
        if message.get("type") == "test_plan" and message.get("@testrun") == SECURITY_RUN:
            plan = message["test_plan"]
        elif message.get("type") == "diagnostic" and message.get("@level") == "error":
            diag = message.get("diagnostic", {})
            errors.append(f"{diag.get('summary', message['@message'])}: {diag.get('detail', '')}".strip())
    if proc.returncode != 0 and not errors:
        errors.append(f"terraform test exited {proc.returncode}: {proc.stderr[-2000:]}")
    summary = [line for line in proc.stdout.splitlines() if '"test_summary"' in line]
    return PlanRun(plan, errors, "\n".join(summary) + proc.stderr[-2000:])


def tree_violations(root: Path, env_name: str, env: dict[str, str]) -> list[str]:
    """All findings for one environment root of a terraform tree: plan errors, then the checks."""
    run = security_plan(root / "envs" / env_name, env)
    found = [f"terraform test failed: {e}" for e in run.errors]
    if run.plan is None:
        return found or [f"no plan of run {SECURITY_RUN!r} in the output: {run.output}"]
    return found + terraform_violations(run.plan, env_name)


@dataclass(frozen=True)
class TerraformFixture:
    """A pristine initialized copy of infra/terraform, and how to run terraform on copies of it."""

    root: Path
    base_env: dict[str, str]

    def env_for(self, env_name: str) -> dict[str, str]:
        return dict(self.base_env, TF_DATA_DIR=str(self.root.parent / f"data-{env_name}"))

    def copy(self, dest: Path) -> Path:
        """A copy (lock files included) that reuses the pristine copy's initialized data dirs: the
        module paths there are relative, so terraform runs on the copy's own files."""
        shutil.copytree(self.root, dest)
        return dest


@pytest.fixture(scope="module")
def terraform_tree(tmp_path_factory: pytest.TempPathFactory) -> TerraformFixture:
    terraform = _terraform()
    mirror = _provider_mirror()
    base = tmp_path_factory.mktemp("tf-security")
    cli_config = base / "terraform.rc"
    cli_config.write_text(
        "disable_checkpoint = true\n"
        "provider_installation {\n"
        "  filesystem_mirror {\n"
        f"    path    = {json.dumps(str(mirror))}\n"
        '    include = ["registry.terraform.io/hashicorp/*"]\n'
        "  }\n"
        "}\n"
    )
    root = base / "terraform"
    shutil.copytree(
        TERRAFORM_DIR,
        root,
        ignore=shutil.ignore_patterns(
            ".terraform", ".terraform.lock.hcl", "*.tfstate", "*.tfstate.*", "*.tfplan", "*.tfvars"
        ),
    )
    fixture = TerraformFixture(root, _base_env(TF_CLI_CONFIG_FILE=str(cli_config), TERRAFORM_BIN=terraform))
    for env_name in ENVS:
        _run(
            [terraform, "init", "-backend=false", "-input=false", "-no-color"],
            root / "envs" / env_name,
            fixture.env_for(env_name),
        )
    return fixture


# ---------------------------------------------------------------------------------------------
# Unit tests of the checks themselves (no terraform needed)
# ---------------------------------------------------------------------------------------------
def _rule(**after: Any) -> Planned:
    return Planned("aws_vpc_security_group_ingress_rule.x", "aws_vpc_security_group_ingress_rule", after, {})


@pytest.mark.parametrize(
    ("after", "bad"),
    [
        ({"cidr_ipv4": "0.0.0.0/0", "ip_protocol": "tcp", "from_port": 5432, "to_port": 5432}, True),
        ({"cidr_ipv6": "::/0", "ip_protocol": "tcp", "from_port": 6379, "to_port": 6379}, True),
        ({"cidr_ipv4": "0.0.0.0/0", "ip_protocol": "-1"}, True),
        ({"cidr_ipv4": "0.0.0.0/0", "ip_protocol": "tcp", "from_port": 0, "to_port": 65535}, True),
        ({"cidr_ipv4": "52.95.110.0/24", "ip_protocol": "tcp", "from_port": 9096, "to_port": 9096}, True),
        ({"cidr_ipv4": "0.0.0.0/0", "ip_protocol": "tcp", "from_port": 443, "to_port": 443}, False),
        ({"cidr_ipv4": "10.40.0.0/16", "ip_protocol": "tcp", "from_port": 8123, "to_port": 8123}, False),
        (
            {
                "referenced_security_group_id": "sg-1",
                "ip_protocol": "tcp",
                "from_port": 5432,
                "to_port": 5432,
            },
            False,
        ),
        ({"cidr_ipv4": "0.0.0.0/0", "ip_protocol": "udp", "from_port": 5432, "to_port": 5432}, False),
    ],
)
def test_ingress_check_classifies_rules(after: dict[str, Any], bad: bool) -> None:
    assert bool(ingress_violations([_rule(**after)])) is bad


def test_ingress_check_reads_legacy_and_inline_rules() -> None:
    legacy = Planned(
        "aws_security_group_rule.x",
        "aws_security_group_rule",
        {
            "type": "ingress",
            "protocol": "tcp",
            "from_port": 9000,
            "to_port": 9100,
            "cidr_blocks": ["0.0.0.0/0"],
        },
        {},
    )
    inline = Planned(
        "aws_security_group.x",
        "aws_security_group",
        {"ingress": [{"protocol": "tcp", "from_port": 6379, "to_port": 6379, "ipv6_cidr_blocks": ["::/0"]}]},
        {},
    )
    egress = Planned(
        "aws_security_group_rule.y",
        "aws_security_group_rule",
        {"type": "egress", "protocol": "-1", "from_port": 0, "to_port": 0, "cidr_blocks": ["0.0.0.0/0"]},
        {},
    )
    assert len(ingress_violations([legacy, inline, egress])) == 2


# ---------------------------------------------------------------------------------------------
# The real tree passes
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("env_name", ENVS)
def test_terraform_security_checks_pass(terraform_tree: TerraformFixture, env_name: str) -> None:
    run = security_plan(terraform_tree.root / "envs" / env_name, terraform_tree.env_for(env_name))
    assert not run.errors, "\n".join(run.errors)
    assert run.plan is not None, run.output
    violations = terraform_violations(run.plan, env_name)
    assert not violations, "\n".join(violations)

    # Not vacuous: the data services exist and every data port has SG-referenced ingress.
    resources = planned_resources(run.plan)
    rules = [r for r in resources if r.type == "aws_vpc_security_group_ingress_rule"]
    for service, ports in DATA_PORTS.items():
        reached = [r for r in rules if r.value("from_port") in ports]
        if service == "Kafka":
            reached = [r for r in reached if r.value("from_port") == 9096]
        assert reached, f"{env_name}: no ingress rule reaches {service}"
        for rule in reached:
            assert rule.is_unknown("referenced_security_group_id"), f"{rule.address} is not SG-referenced"
            assert rule.value("cidr_ipv4") is None and rule.value("cidr_ipv6") is None, rule.address
    primaries = [
        r for r in resources if r.type == "aws_db_instance" and r.value("replicate_source_db") is None
    ]
    assert len(primaries) == 1 and primaries[0].value("deletion_protection") is True


# ---------------------------------------------------------------------------------------------
# The Done-when proof: broken copies fail
# ---------------------------------------------------------------------------------------------
def _replace_once(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) >= 1, f"{path}: {old!r} not found (update this test with the module)"
    path.write_text(text.replace(old, new, 1))


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text)


OPEN_POSTGRES = """
# Deliberately broken by test_infra_security: PostgreSQL open to the world, through a local.
locals {
  debug_cidr = "0.0.0.0/0"
}

resource "aws_vpc_security_group_ingress_rule" "debug_postgres" {
  security_group_id = aws_security_group.data["postgres"].id
  cidr_ipv4         = local.debug_cidr
  ip_protocol       = "tcp"
  from_port         = 5432
  to_port           = 5432
  description       = "debug access"
}
"""


def _deletion_protection_off_in_locals(root: Path) -> None:
    env_dir = root / "envs" / "prod"
    _replace_once(env_dir / "main.tf", "deletion_protection   = true", "deletion_protection   = false")
    _replace_once(env_dir / "terraform.tfvars.example", "  deletion_protection   = true\n", "")


TERRAFORM_BREAKS: dict[str, tuple[Callable[[Path], None], str, str]] = {
    # name: (edit of the copy, environment root, regex one finding must match)
    "rds_storage_unencrypted": (
        lambda root: _replace_once(
            root / "modules" / "postgres" / "main.tf",
            "storage_encrypted     = true",
            "storage_encrypted     = false",
        ),
        "prod",
        r"aws_db_instance\.primary: storage_encrypted must be true",
    ),
    "postgres_open_to_world": (
        lambda root: _append(root / "modules" / "network" / "security_groups.tf", OPEN_POSTGRES),
        "prod",
        r"debug_postgres: ingress to data port\(s\) \[5432\] from public CIDR\(s\) \['0\.0\.0\.0/0'\]",
    ),
    "redis_tls_off": (
        lambda root: _replace_once(
            root / "modules" / "redis" / "main.tf",
            "transit_encryption_enabled = true",
            "transit_encryption_enabled = false",
        ),
        "staging",
        r"transit_encryption|TLS",
    ),
    "prod_deletion_protection_off_in_tfvars": (
        lambda root: _replace_once(
            root / "envs" / "prod" / "terraform.tfvars.example",
            "deletion_protection   = true",
            "deletion_protection   = false",
        ),
        "prod",
        r"prod PostgreSQL keeps deletion_protection = true",
    ),
    # A root's locals bypass its variable validations: the module's own guard catches this one.
    "prod_deletion_protection_off_in_locals": (
        _deletion_protection_off_in_locals,
        "prod",
        r"In prod, PostgreSQL keeps deletion_protection = true",
    ),
}


@pytest.mark.parametrize("name", sorted(TERRAFORM_BREAKS))
def test_terraform_checks_fail_on_a_broken_copy(
    terraform_tree: TerraformFixture, tmp_path: Path, name: str
) -> None:
    edit, env_name, expected = TERRAFORM_BREAKS[name]
    broken = terraform_tree.copy(tmp_path / "terraform")
    edit(broken)
    violations = tree_violations(broken, env_name, terraform_tree.env_for(env_name))
    assert violations, f"{name}: the checks passed on a broken copy"
    assert any(re.search(expected, v) for v in violations), f"{name}: unexpected findings:\n" + "\n".join(
        violations
    )


def test_terraform_checks_pass_on_an_unbroken_copy(terraform_tree: TerraformFixture, tmp_path: Path) -> None:
    """The copy mechanism itself does not make the checks fail (so the failures above are the edits)."""
    copy = terraform_tree.copy(tmp_path / "terraform")
    assert tree_violations(copy, "prod", terraform_tree.env_for("prod")) == []


# ---------------------------------------------------------------------------------------------
# Compose
# ---------------------------------------------------------------------------------------------
LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def compose_violations(config: dict[str, Any]) -> list[str]:
    """Security findings of a resolved compose configuration (``config --format json``)."""
    out: list[str] = []
    services: dict[str, Any] = config["services"]
    for name, svc in services.items():
        for port in svc.get("ports") or []:
            if port.get("published") and port.get("host_ip") not in LOOPBACK:
                where = port.get("host_ip") or "all interfaces"
                out.append(
                    f"{name}: port {port.get('target')} is published on {where} (bind it to 127.0.0.1)"
                )
        if svc.get("network_mode") == "host":
            out.append(f"{name}: network_mode host bypasses the port bindings")
        if svc.get("privileged"):
            out.append(f"{name}: privileged")
        image = svc.get("image", "")
        env = svc.get("environment") or {}
        command = " ".join(svc.get("command") or [])
        if image.startswith("redis:") and "redis-server" in command:
            for flag in ("--requirepass", "--masterauth"):
                if flag not in command:
                    out.append(f"{name}: redis-server without {flag} (Redis AUTH)")
            if not env.get("REDIS_PASSWORD"):
                out.append(f"{name}: empty REDIS_PASSWORD")
        no_password = not env.get("POSTGRES_PASSWORD") or env.get("POSTGRES_HOST_AUTH_METHOD") == "trust"
        if image.startswith("postgres:") and "POSTGRES_USER" in env and no_password:
            out.append(f"{name}: PostgreSQL without a password")
        if image.startswith("clickhouse/") and not env.get("CLICKHOUSE_PASSWORD"):
            out.append(f"{name}: ClickHouse without a password")
        if any(k.startswith("STOCKPULSE_") for k in env) and not env.get("STOCKPULSE_REDIS__PASSWORD"):
            out.append(f"{name}: the pipeline connects to Redis without a password")
    return out


def resolved_compose(compose_file: Path) -> dict[str, Any]:
    binary = _compose_binary()
    out = _run(
        [str(binary), "-f", str(compose_file), "--profile", "*", "config", "--format", "json"],
        compose_file.parent,
        _compose_env(),
        timeout=60,
    )
    parsed: dict[str, Any] = json.loads(out)
    return parsed


@pytest.fixture
def compose_copy(tmp_path: Path) -> Iterator[Path]:
    """infra/compose in the same layout under a temporary root (the file refers to ../..)."""
    _compose_binary()
    root = tmp_path / "repo"
    shutil.copytree(COMPOSE_DIR, root / "infra" / "compose", ignore=shutil.ignore_patterns(".env"))
    shutil.copytree(REPO / "triton_models", root / "triton_models")
    yield root / "infra" / "compose" / "compose.yaml"


def test_compose_security_checks_pass() -> None:
    violations = compose_violations(resolved_compose(COMPOSE_DIR / "compose.yaml"))
    assert not violations, "\n".join(violations)


COMPOSE_BREAKS: dict[str, tuple[str, str, str]] = {
    # name: (text in compose.yaml, replacement, regex one finding must match)
    "postgres_on_all_interfaces": (
        'ports: ["127.0.0.1:15432:5432"]',
        'ports: ["15432:5432"]',
        r"postgres-primary: port 5432 is published on all interfaces",
    ),
    "clickhouse_on_0000": (
        'ports: ["127.0.0.1:8123:8123"]',
        'ports: ["0.0.0.0:8123:8123"]',
        r"clickhouse: port 8123 is published on 0\.0\.0\.0",
    ),
    "redis_without_auth": (
        '--requirepass "$$REDIS_PASSWORD" ',
        "",
        r"redis-\d: redis-server without --requirepass",
    ),
}


@pytest.mark.parametrize("name", sorted(COMPOSE_BREAKS))
def test_compose_checks_fail_on_a_broken_copy(compose_copy: Path, name: str) -> None:
    old, new, expected = COMPOSE_BREAKS[name]
    assert compose_violations(resolved_compose(compose_copy)) == [], "the unbroken copy must pass"
    _replace_once(compose_copy, old, new)
    violations = compose_violations(resolved_compose(compose_copy))
    assert any(re.search(expected, v) for v in violations), f"{name}: findings:\n" + "\n".join(violations)
