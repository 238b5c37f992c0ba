# Each object variable overrides the environment's sizing in main.tf (locals) key by key; the
# modules validate the values, and the validations below reject unknown keys (a typo in a tfvars
# file would otherwise be dropped silently by Terraform's object conversion).

variable "region" {
  description = "AWS region."
  type        = string
  default     = "eu-west-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.region))
    error_message = "region must be an AWS region name such as eu-west-1."
  }
}

variable "network" {
  description = "Overrides of the network module: vpc_cidr, az_count, single_nat_gateway, flow_log_retention_days."
  type        = any
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.network) : contains(["vpc_cidr", "az_count", "single_nat_gateway", "flow_log_retention_days"], k)])
    error_message = "network accepts only vpc_cidr, az_count, single_nat_gateway, flow_log_retention_days."
  }
}

variable "msk" {
  description = "Overrides of the MSK module: kafka_version, broker_count, instance_type, ebs_volume_size_gb, log_retention_hours, enable_iam_auth."
  type        = any
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.msk) : contains(["kafka_version", "broker_count", "instance_type", "ebs_volume_size_gb", "log_retention_hours", "enable_iam_auth"], k)])
    error_message = "msk accepts only kafka_version, broker_count, instance_type, ebs_volume_size_gb, log_retention_hours, enable_iam_auth."
  }
}

variable "topics" {
  description = "Overrides of the partition counts: tick_partitions, bar_partitions, signal_partitions, order_partitions."
  type        = any
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.topics) : contains(["tick_partitions", "bar_partitions", "signal_partitions", "order_partitions"], k)])
    error_message = "topics accepts only tick_partitions, bar_partitions, signal_partitions, order_partitions."
  }
}

variable "redis" {
  description = "Overrides of the Redis module: engine_version, node_type, shards, replicas_per_shard, snapshot_retention_days."
  type        = any
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.redis) : contains(["engine_version", "node_type", "shards", "replicas_per_shard", "snapshot_retention_days"], k)])
    error_message = "redis accepts only engine_version, node_type, shards, replicas_per_shard, snapshot_retention_days."
  }
}

variable "postgres" {
  description = "Overrides of the PostgreSQL module: engine_version, instance_class, replica_instance_class, read_replica_count, allocated_storage_gb, max_allocated_storage_gb, multi_az, backup_retention_days, deletion_protection."
  type        = any
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.postgres) : contains(["engine_version", "instance_class", "replica_instance_class", "read_replica_count", "allocated_storage_gb", "max_allocated_storage_gb", "multi_az", "backup_retention_days", "deletion_protection"], k)])
    error_message = "postgres accepts only engine_version, instance_class, replica_instance_class, read_replica_count, allocated_storage_gb, max_allocated_storage_gb, multi_az, backup_retention_days, deletion_protection."
  }

  validation {
    condition     = try(var.postgres.deletion_protection, true) == true && try(var.postgres.backup_retention_days, 14) >= 7
    error_message = "prod PostgreSQL keeps deletion_protection = true and backup_retention_days >= 7."
  }
}

variable "clickhouse" {
  description = "Overrides of the ClickHouse module: node_count, instance_type, clickhouse_version, data_volume_size_gb, data_volume_iops, data_volume_throughput."
  type        = any
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.clickhouse) : contains(["node_count", "instance_type", "clickhouse_version", "data_volume_size_gb", "data_volume_iops", "data_volume_throughput"], k)])
    error_message = "clickhouse accepts only node_count, instance_type, clickhouse_version, data_volume_size_gb, data_volume_iops, data_volume_throughput."
  }
}

variable "eks" {
  description = "Overrides of the compute module: kubernetes_version, endpoint_public_access, public_access_cidrs, cluster_admin_principal_arns, gpu_ami_type, cpu_node_group, gpu_node_group."
  type        = any
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.eks) : contains(["kubernetes_version", "endpoint_public_access", "public_access_cidrs", "cluster_admin_principal_arns", "gpu_ami_type", "cpu_node_group", "gpu_node_group"], k)])
    error_message = "eks accepts only kubernetes_version, endpoint_public_access, public_access_cidrs, cluster_admin_principal_arns, gpu_ami_type, cpu_node_group, gpu_node_group."
  }
}

variable "app" {
  description = "Overrides of the in-cluster settings: namespace, service_account, schema_registry_url, triton_grpc_url, triton_http_url, log_level, ssl_ca_location."
  type        = any
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.app) : contains(["namespace", "service_account", "schema_registry_url", "triton_grpc_url", "triton_http_url", "log_level", "ssl_ca_location"], k)])
    error_message = "app accepts only namespace, service_account, schema_registry_url, triton_grpc_url, triton_http_url, log_level, ssl_ca_location."
  }
}

variable "tags" {
  description = "Extra tags on every resource."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.tags) : length(k) <= 127 && !startswith(lower(k), "aws:")])
    error_message = "Tag keys must be at most 127 characters and must not start with aws:."
  }
}
