# The pipeline's settings, named exactly as streams.config.Settings reads them (prefix
# STOCKPULSE_, "__" between nested names). tests/integration/test_infra.py checks every name here
# against the Settings model, so this map cannot drift from the code.

locals {
  stockpulse_env = {
    STOCKPULSE_KAFKA__BOOTSTRAP_SERVERS   = module.msk.bootstrap_brokers_sasl_scram
    STOCKPULSE_KAFKA__SECURITY_PROTOCOL   = "SASL_SSL"
    STOCKPULSE_KAFKA__SASL_MECHANISM      = module.msk.sasl_mechanism
    STOCKPULSE_KAFKA__SASL_USERNAME       = module.msk.sasl_username
    STOCKPULSE_KAFKA__SSL_CA_LOCATION     = var.app.ssl_ca_location
    STOCKPULSE_KAFKA__CLIENT_ID           = "stockpulse-${var.environment}"
    STOCKPULSE_TOPICS__TICK_PARTITIONS    = tostring(var.topics.tick_partitions)
    STOCKPULSE_TOPICS__BAR_PARTITIONS     = tostring(var.topics.bar_partitions)
    STOCKPULSE_TOPICS__SIGNAL_PARTITIONS  = tostring(var.topics.signal_partitions)
    STOCKPULSE_TOPICS__ORDER_PARTITIONS   = tostring(var.topics.order_partitions)
    STOCKPULSE_TOPICS__REPLICATION_FACTOR = tostring(min(3, var.msk.broker_count))
    STOCKPULSE_SCHEMAS__REGISTRY_URL      = var.app.schema_registry_url
    STOCKPULSE_REDIS__STARTUP_NODES       = module.redis.configuration_endpoint
    STOCKPULSE_REDIS__SSL                 = "true"
    STOCKPULSE_CLICKHOUSE__URL            = module.clickhouse.http_url
    STOCKPULSE_CLICKHOUSE__DATABASE       = module.clickhouse.database
    STOCKPULSE_CLICKHOUSE__USERNAME       = module.clickhouse.username
    STOCKPULSE_TRITON__GRPC_URL           = var.app.triton_grpc_url
    STOCKPULSE_TRITON__HTTP_URL           = var.app.triton_http_url
    STOCKPULSE_LOG_LEVEL                  = var.app.log_level
  }

  stockpulse_secret_env = {
    STOCKPULSE_KAFKA__SASL_PASSWORD  = module.msk.sasl_password
    STOCKPULSE_REDIS__PASSWORD       = module.redis.auth_token
    STOCKPULSE_POSTGRES__DSN         = module.postgres.dsn
    STOCKPULSE_POSTGRES__REPLICA_DSN = module.postgres.replica_dsn
    STOCKPULSE_CLICKHOUSE__PASSWORD  = module.clickhouse.password
  }

  # Where each secret lives, for External Secrets / the Secrets Store CSI driver: the pods' role
  # (EKS Pod Identity) may read exactly these.
  stockpulse_secret_refs = {
    STOCKPULSE_KAFKA__SASL_PASSWORD  = { secret_arn = module.msk.scram_secret_arn, json_key = "password" }
    STOCKPULSE_REDIS__PASSWORD       = { secret_arn = module.redis.auth_secret_arn, json_key = null }
    STOCKPULSE_POSTGRES__DSN         = { secret_arn = module.postgres.dsn_secret_arn, json_key = "dsn" }
    STOCKPULSE_POSTGRES__REPLICA_DSN = { secret_arn = module.postgres.dsn_secret_arn, json_key = "replica_dsn" }
    STOCKPULSE_CLICKHOUSE__PASSWORD  = { secret_arn = module.clickhouse.secret_arn, json_key = null }
  }
}

output "stockpulse_env" {
  description = "Non-secret STOCKPULSE_ settings: env var name => value (a ConfigMap)."
  value       = local.stockpulse_env
}

output "stockpulse_secret_env" {
  description = "Secret STOCKPULSE_ settings: env var name => value (a Secret). Prefer stockpulse_secret_refs in clusters."
  value       = local.stockpulse_secret_env
  sensitive   = true
}

output "stockpulse_secret_refs" {
  description = "Secret STOCKPULSE_ settings: env var name => {secret_arn, json_key} in Secrets Manager."
  value       = local.stockpulse_secret_refs
}

output "eks" {
  description = "EKS cluster, node groups, the pods' IAM role and the image repository."
  value = {
    cluster_name       = module.compute.cluster_name
    cluster_endpoint   = module.compute.cluster_endpoint
    node_group_names   = module.compute.node_group_names
    app_role_arn       = module.compute.app_role_arn
    ecr_repository_url = module.compute.ecr_repository_url
    namespace          = var.app.namespace
    service_account    = var.app.service_account
  }
}

output "network" {
  description = "VPC, subnets and NAT egress IPs."
  value = {
    vpc_id             = module.network.vpc_id
    private_subnet_ids = module.network.private_subnet_ids
    data_subnet_ids    = module.network.data_subnet_ids
    nat_public_ips     = module.network.nat_public_ips
  }
}

output "endpoints" {
  description = "Data-service endpoints (non-secret)."
  value = {
    msk_cluster_arn           = module.msk.cluster_arn
    redis_configuration       = module.redis.configuration_endpoint
    postgres_primary          = module.postgres.primary_endpoint
    postgres_replicas         = module.postgres.replica_endpoints
    clickhouse_http_url       = module.clickhouse.http_url
    clickhouse_node_hostnames = module.clickhouse.node_hostnames
  }
}
