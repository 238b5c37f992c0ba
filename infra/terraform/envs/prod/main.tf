# Production: three AZs, a NAT gateway per AZ, 3 MSK brokers, Redis 3 shards x 2 nodes,
# RDS Multi-AZ with a read replica, three ClickHouse replicas, CPU and GPU node groups.
# Every value below can be overridden key by key from terraform.tfvars.

locals {
  environment = "prod"

  network = merge({
    vpc_cidr                = "10.40.0.0/16"
    az_count                = 3
    single_nat_gateway      = false
    flow_log_retention_days = 90
  }, var.network)

  msk = merge({
    kafka_version      = "3.8.x"
    broker_count       = 3
    instance_type      = "kafka.m7g.large"
    ebs_volume_size_gb = 1000
  }, var.msk)

  topics = merge({
    tick_partitions   = 24
    bar_partitions    = 12
    signal_partitions = 12
    order_partitions  = 12
  }, var.topics)

  redis = merge({
    node_type          = "cache.r7g.large"
    shards             = 3
    replicas_per_shard = 1
  }, var.redis)

  postgres = merge({
    instance_class        = "db.r7g.large"
    read_replica_count    = 1
    multi_az              = true
    backup_retention_days = 14
    deletion_protection   = true
  }, var.postgres)

  clickhouse = merge({
    node_count          = 3
    instance_type       = "m7i.2xlarge"
    data_volume_size_gb = 2000
  }, var.clickhouse)

  eks = merge({
    kubernetes_version = "1.32"
    cpu_node_group     = { instance_types = ["c7i.2xlarge"], min_size = 3, desired_size = 3, max_size = 12, disk_size_gb = 50 }
    gpu_node_group     = { instance_types = ["g5.xlarge"], min_size = 1, desired_size = 2, max_size = 4, disk_size_gb = 100 }
  }, var.eks)

  app = merge({ log_level = "warn" }, var.app)
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
