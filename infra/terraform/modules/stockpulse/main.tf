# The whole StockPulse Stream platform of one environment: network, MSK, ElastiCache Redis,
# RDS PostgreSQL, ClickHouse on EC2 and EKS, wired together, plus the STOCKPULSE_ settings the
# pipeline needs to reach them (outputs.tf). envs/prod and envs/staging each call this once.

locals {
  name = coalesce(var.name, "stockpulse-${var.environment}")
  tags = merge(var.tags, { Project = "stockpulse-stream", Environment = var.environment })
}

module "network" {
  source = "../network"

  name                    = local.name
  vpc_cidr                = var.network.vpc_cidr
  az_count                = var.network.az_count
  single_nat_gateway      = var.network.single_nat_gateway
  flow_log_retention_days = var.network.flow_log_retention_days
  tags                    = local.tags
}

module "msk" {
  source = "../msk"

  name                = local.name
  kafka_version       = var.msk.kafka_version
  broker_count        = var.msk.broker_count
  instance_type       = var.msk.instance_type
  ebs_volume_size_gb  = var.msk.ebs_volume_size_gb
  log_retention_hours = var.msk.log_retention_hours
  enable_iam_auth     = var.msk.enable_iam_auth
  default_partitions  = var.topics.tick_partitions
  subnet_ids          = slice(module.network.data_subnet_ids, 0, min(3, length(module.network.data_subnet_ids)))
  security_group_id   = module.network.msk_security_group_id
  tags                = local.tags
}

module "redis" {
  source = "../redis"

  name                    = local.name
  engine_version          = var.redis.engine_version
  node_type               = var.redis.node_type
  shards                  = var.redis.shards
  replicas_per_shard      = var.redis.replicas_per_shard
  snapshot_retention_days = var.redis.snapshot_retention_days
  subnet_ids              = module.network.data_subnet_ids
  security_group_id       = module.network.redis_security_group_id
  tags                    = local.tags
}

module "postgres" {
  source = "../postgres"

  name                     = local.name
  engine_version           = var.postgres.engine_version
  instance_class           = var.postgres.instance_class
  replica_instance_class   = var.postgres.replica_instance_class
  read_replica_count       = var.postgres.read_replica_count
  allocated_storage_gb     = var.postgres.allocated_storage_gb
  max_allocated_storage_gb = var.postgres.max_allocated_storage_gb
  multi_az                 = var.postgres.multi_az
  backup_retention_days    = var.postgres.backup_retention_days
  deletion_protection      = var.postgres.deletion_protection
  subnet_ids               = module.network.data_subnet_ids
  security_group_id        = module.network.postgres_security_group_id
  tags                     = local.tags
}

module "clickhouse" {
  source = "../clickhouse"

  name                       = local.name
  node_count                 = var.clickhouse.node_count
  instance_type              = var.clickhouse.instance_type
  clickhouse_version         = var.clickhouse.clickhouse_version
  data_volume_size_gb        = var.clickhouse.data_volume_size_gb
  data_volume_iops           = var.clickhouse.data_volume_iops
  data_volume_throughput     = var.clickhouse.data_volume_throughput
  vpc_id                     = module.network.vpc_id
  subnet_ids                 = module.network.data_subnet_ids
  security_group_id          = module.network.clickhouse_security_group_id
  workload_security_group_id = module.network.workload_security_group_id
  dns_zone_name              = "clickhouse.${local.name}.internal"
  tags                       = local.tags
}

module "compute" {
  source = "../compute"

  name                         = local.name
  kubernetes_version           = var.eks.kubernetes_version
  endpoint_public_access       = var.eks.endpoint_public_access
  public_access_cidrs          = var.eks.public_access_cidrs
  cluster_admin_principal_arns = var.eks.cluster_admin_principal_arns
  gpu_ami_type                 = var.eks.gpu_ami_type
  cpu_node_group               = var.eks.cpu_node_group
  gpu_node_group               = var.eks.gpu_node_group
  subnet_ids                   = module.network.private_subnet_ids
  workload_security_group_id   = module.network.workload_security_group_id
  app_namespace                = var.app.namespace
  app_service_account          = var.app.service_account
  app_secret_arns = [
    module.msk.scram_secret_arn,
    module.redis.auth_secret_arn,
    module.postgres.dsn_secret_arn,
    module.clickhouse.secret_arn,
  ]
  app_kms_key_arns = [
    module.msk.kms_key_arn,
    module.redis.kms_key_arn,
    module.postgres.kms_key_arn,
    module.clickhouse.kms_key_arn,
  ]
  tags = local.tags
}
