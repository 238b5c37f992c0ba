# Offline plan of the prod root with a mocked AWS provider (no credentials, no network): evaluates
# every module's variable validations, the provider's own argument checks, the templates and the
# STOCKPULSE_ output maps. Run: terraform init -backend=false && terraform test
# [-var-file=terraform.tfvars.example]
# (tests/integration/test_infra.py does this with the local provider mirror).

mock_provider "aws" {
  source = "../../tests/mocks"
}

run "plan" {
  command = plan

  assert {
    condition     = alltrue([for k in keys(output.stockpulse_env) : startswith(k, "STOCKPULSE_")])
    error_message = "Every key of stockpulse_env must be a STOCKPULSE_ setting."
  }

  assert {
    condition = (
      output.stockpulse_env["STOCKPULSE_KAFKA__SECURITY_PROTOCOL"] == "SASL_SSL" &&
      output.stockpulse_env["STOCKPULSE_KAFKA__SASL_MECHANISM"] == "SCRAM-SHA-512" &&
      output.stockpulse_env["STOCKPULSE_REDIS__SSL"] == "true" &&
      output.stockpulse_env["STOCKPULSE_TOPICS__REPLICATION_FACTOR"] == "3" &&
      output.stockpulse_env["STOCKPULSE_TOPICS__TICK_PARTITIONS"] == "24"
    )
    error_message = "Kafka must use SASL_SSL + SCRAM-SHA-512, Redis TLS, replication factor 3 and 24 tick partitions."
  }

  assert {
    condition     = toset(keys(output.stockpulse_secret_env)) == toset(keys(output.stockpulse_secret_refs))
    error_message = "Every secret setting must have a Secrets Manager reference and vice versa."
  }

  assert {
    condition     = length(setintersection(toset(keys(output.stockpulse_env)), toset(keys(output.stockpulse_secret_env)))) == 0
    error_message = "A setting must be either plain or secret, not both."
  }

  assert {
    condition     = length(output.endpoints.clickhouse_node_hostnames) == 3
    error_message = "prod runs 3 ClickHouse node(s)."
  }
}

run "plan_two_azs_six_brokers" {
  command = plan

  variables {
    network    = { az_count = 2 }
    msk        = { broker_count = 6 }
    clickhouse = { node_count = 3 }
  }

  assert {
    condition     = length(output.endpoints.clickhouse_node_hostnames) == 3
    error_message = "node_count override must be honoured."
  }
}

run "rejects_unknown_override_keys" {
  command = plan

  variables {
    msk   = { brokers = 6 }
    redis = { shard_count = 3 }
  }

  expect_failures = [var.msk, var.redis]
}

run "rejects_prod_without_deletion_protection" {
  command = plan

  variables {
    postgres = { deletion_protection = false }
  }

  expect_failures = [var.postgres]
}

run "rejects_prod_without_backups_retained" {
  command = plan

  variables {
    postgres = { backup_retention_days = 1 }
  }

  expect_failures = [var.postgres]
}
