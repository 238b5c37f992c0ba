# Staging: the same topology as production (three AZs, 3 brokers, 3 Redis shards, a read
# replica, CPU + GPU node groups) on smaller instances, one NAT gateway and one ClickHouse node.
# Every value below can be overridden key by key from terraform.tfvars.

locals {
  environment = "staging"

  network = merge({
    vpc_cidr                = "10.50.0.0/16"
    az_count                = 3
    single_nat_gateway      = true
    flow_log_retention_days = 14
  }, var.network)

  msk = merge({
    kafka_version      = "3.8.x"
    broker_count       = 3
    instance_type      = "kafka.t3.small"
    ebs_volume_size_gb = 100
  }, var.msk)

  topics = merge({
    tick_partitions   = 12
    bar_partitions    = 12
    signal_partitions = 12
    order_partitions  = 12
  }, var.topics)

  redis = merge({
    node_type               = "cache.t4g.medium"
    shards                  = 3
    replicas_per_shard      = 1
    snapshot_retention_days = 1
  }, var.redis)

  postgres = merge({
    instance_class           = "db.t4g.medium"
    read_replica_count       = 1
    allocated_storage_gb     = 50
    max_allocated_storage_gb = 200
    multi_az                 = false
    backup_retention_days    = 7
    deletion_protection      = true
  }, var.postgres)

  clickhouse = merge({
    node_count             = 1
    instance_type          = "m7i.xlarge"
    data_volume_size_gb    = 200
    data_volume_iops       = 3000
    data_volume_throughput = 125
  }, var.clickhouse)

  eks = merge({
    kubernetes_version = "1.32"
    cpu_node_group     = { instance_types = ["c7i.xlarge"], min_size = 2, desired_size = 2, max_size = 6, disk_size_gb = 50 }
    gpu_node_group     = { instance_types = ["g5.xlarge"], min_size = 0, desired_size = 1, max_size = 2, disk_size_gb = 100 }
  }, var.eks)

  app = merge({ log_level = "info" }, var.app)
}

module "stockpulse" {
  source = "../../modules/stockpulse"

  environment = local.environment
  network     = local.network
  msk         = local.msk
  topics      = local.topics
  redis       = local.redis
  postgres    = local.postgres
  clickhouse  = local.clickhouse
  eks         = local.eks
  app         = local.app
  tags        = var.tags
}
