variable "environment" {
  description = "Environment name: prod or staging."
  type        = string

  validation {
    condition     = contains(["prod", "staging"], var.environment)
    error_message = "environment must be prod or staging."
  }
}

variable "name" {
  description = "Name prefix of every resource (default stockpulse-<environment>)."
  type        = string
  default     = null

  validation {
    condition     = var.name == null || can(regex("^[a-z][a-z0-9-]{2,30}[a-z0-9]$", var.name))
    error_message = "name must be null or 4-32 characters of lowercase letters, digits and '-', starting with a letter."
  }
}

variable "network" {
  description = "VPC layout."
  type = object({
    vpc_cidr                = optional(string, "10.40.0.0/16")
    az_count                = optional(number, 3)
    single_nat_gateway      = optional(bool, false)
    flow_log_retention_days = optional(number, 30)
  })
  default = {}
}

variable "msk" {
  description = "Kafka (Amazon MSK)."
  type = object({
    kafka_version       = optional(string, "3.8.x")
    broker_count        = optional(number, 3)
    instance_type       = optional(string, "kafka.m7g.large")
    ebs_volume_size_gb  = optional(number, 500)
    log_retention_hours = optional(number, 168)
    enable_iam_auth     = optional(bool, false)
  })
  default = {}
}

variable "topics" {
  description = "Partition counts the topics are created with (`stockpulse topics create`); the replication factor follows the broker count (at most 3)."
  type = object({
    tick_partitions   = optional(number, 24)
    bar_partitions    = optional(number, 12)
    signal_partitions = optional(number, 12)
    order_partitions  = optional(number, 12)
  })
  default = {}

  validation {
    condition = alltrue([
      for v in values(var.topics) : v >= 1 && v <= 1024 && floor(v) == v
    ])
    error_message = "Every partition count must be an integer between 1 and 1024 (the bounds of streams.config.TopicSettings)."
  }
}

variable "redis" {
  description = "Redis (ElastiCache, cluster mode)."
  type = object({
    engine_version          = optional(string, "7.1")
    node_type               = optional(string, "cache.r7g.large")
    shards                  = optional(number, 3)
    replicas_per_shard      = optional(number, 1)
    snapshot_retention_days = optional(number, 7)
  })
  default = {}
}

variable "postgres" {
  description = "PostgreSQL (RDS) with read replicas."
  type = object({
    engine_version           = optional(string, "16.6")
    instance_class           = optional(string, "db.r7g.large")
    replica_instance_class   = optional(string)
    read_replica_count       = optional(number, 1)
    allocated_storage_gb     = optional(number, 100)
    max_allocated_storage_gb = optional(number, 1000)
    multi_az                 = optional(bool, true)
    backup_retention_days    = optional(number, 14)
    deletion_protection      = optional(bool, true)
  })
  default = {}

  # Enforced here, not only in envs/prod: a value set in a root module's locals (main.tf) never
  # passes through the root's variable validations.
  validation {
    condition     = var.environment != "prod" || (var.postgres.deletion_protection && var.postgres.backup_retention_days >= 7)
    error_message = "In prod, PostgreSQL keeps deletion_protection = true and backup_retention_days >= 7 (turn protection off only in a reviewed change right before a planned destroy)."
  }
}

variable "clickhouse" {
  description = "ClickHouse on EC2."
  type = object({
    node_count             = optional(number, 3)
    instance_type          = optional(string, "m7i.2xlarge")
    clickhouse_version     = optional(string, "25.3.6.56")
    data_volume_size_gb    = optional(number, 1000)
    data_volume_iops       = optional(number, 6000)
    data_volume_throughput = optional(number, 500)
  })
  default = {}
}

variable "eks" {
  description = "EKS cluster and node groups."
  type = object({
    kubernetes_version           = optional(string, "1.32")
    endpoint_public_access       = optional(bool, false)
    public_access_cidrs          = optional(list(string), [])
    cluster_admin_principal_arns = optional(list(string), [])
    gpu_ami_type                 = optional(string, "AL2023_x86_64_NVIDIA")
    cpu_node_group = optional(object({
      instance_types = list(string)
      min_size       = number
      desired_size   = number
      max_size       = number
      disk_size_gb   = number
    }), { instance_types = ["c7i.2xlarge"], min_size = 3, desired_size = 3, max_size = 12, disk_size_gb = 50 })
    gpu_node_group = optional(object({
      instance_types = list(string)
      min_size       = number
      desired_size   = number
      max_size       = number
      disk_size_gb   = number
    }), { instance_types = ["g5.xlarge"], min_size = 1, desired_size = 1, max_size = 4, disk_size_gb = 100 })
  })
  default = {}
}

variable "app" {
  description = "How the pipeline runs inside EKS: namespace, service account, in-cluster service names."
  type = object({
    namespace           = optional(string, "stockpulse")
    service_account     = optional(string, "stockpulse")
    schema_registry_url = optional(string, "http://schema-registry.stockpulse.svc.cluster.local:8081")
    triton_grpc_url     = optional(string, "triton.stockpulse.svc.cluster.local:8001")
    triton_http_url     = optional(string, "triton.stockpulse.svc.cluster.local:8000")
    log_level           = optional(string, "info")
    ssl_ca_location     = optional(string, "/etc/ssl/certs/ca-certificates.crt")
  })
  default = {}

  validation {
    condition     = contains(["debug", "info", "warn", "error"], var.app.log_level)
    error_message = "app.log_level must be debug, info, warn or error (streams.config.Settings.log_level)."
  }

  validation {
    condition     = can(regex("^https?://", var.app.schema_registry_url)) && can(regex("^[a-z0-9.-]+:[0-9]+$", var.app.triton_grpc_url))
    error_message = "app.schema_registry_url must be an http(s) URL and app.triton_grpc_url host:port."
  }
}

variable "tags" {
  description = "Tags added to every resource (on top of the provider's default_tags)."
  type        = map(string)
  default     = {}
}
