# Offline plan of the staging root with a mocked AWS provider (no credentials, no network): evaluates
# every module's variable validations, the provider's own argument checks, the templates and the
# STOCKPULSE_ output maps. Run: terraform init -backend=false && terraform test
# [-var-file=terraform.tfvars.example]
# (tests/integration/test_infra.py does this with the local provider mirror).

mock_provider "aws" {
  mock_data "aws_availability_zones" {
    defaults = { names = ["eu-west-1a", "eu-west-1b", "eu-west-1c", "eu-west-1d"] }
  }
  mock_data "aws_region" {
    defaults = { name = "eu-west-1" }
  }
  mock_data "aws_partition" {
    defaults = { partition = "aws" }
  }
  mock_data "aws_caller_identity" {
    defaults = { account_id = "123456789012" }
  }
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}" }
  }
  mock_data "aws_ssm_parameter" {
    defaults = { insecure_value = "ami-0123456789abcdef0" }
  }
  mock_data "aws_subnet" {
    defaults = { availability_zone = "eu-west-1a" }
  }
  mock_data "aws_vpc" {
    defaults = { cidr_block = "10.0.0.0/16" }
  }
  mock_data "aws_secretsmanager_random_password" {
    defaults = { random_password = "MockPassword0123456789abcdefghijABCDEFGHIJ" }
  }
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
      output.stockpulse_env["STOCKPULSE_TOPICS__TICK_PARTITIONS"] == "12"
    )
    error_message = "Kafka must use SASL_SSL + SCRAM-SHA-512, Redis TLS, replication factor 3 and 12 tick partitions."
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
    condition     = length(output.endpoints.clickhouse_node_hostnames) == 1
    error_message = "staging runs 1 ClickHouse node(s)."
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
