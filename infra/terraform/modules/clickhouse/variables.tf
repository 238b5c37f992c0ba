variable "name" {
  description = "Name prefix (e.g. stockpulse-prod)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,30}[a-z0-9]$", var.name))
    error_message = "name must be 4-32 characters of lowercase letters, digits and '-', starting with a letter."
  }
}

variable "vpc_id" {
  description = "VPC of the cluster (the private DNS zone is attached to it)."
  type        = string
}

variable "subnet_ids" {
  description = "Private data subnets; node i lives in subnet i mod len(subnet_ids)."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 1
    error_message = "At least one subnet is needed."
  }
}

variable "security_group_id" {
  description = "Security group of the ClickHouse hosts (from the network module)."
  type        = string
}

variable "workload_security_group_id" {
  description = "Security group of the workloads: the only source allowed to reach the load balancer."
  type        = string
}

variable "node_count" {
  description = "ClickHouse nodes: one shard, node_count replicas (ReplicatedMergeTree). ClickHouse Keeper runs on the first three (or on the only one)."
  type        = number
  default     = 3

  validation {
    condition     = (var.node_count == 1 || var.node_count >= 3) && var.node_count <= 9 && floor(var.node_count) == var.node_count
    error_message = "node_count must be 1 (no replication) or 3 to 9 (a Keeper quorum needs three)."
  }
}

variable "instance_type" {
  description = "EC2 instance type of the nodes (x86_64: the AMI below is the x86_64 Amazon Linux 2023)."
  type        = string
  default     = "m7i.2xlarge"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", var.instance_type)) && !can(regex("^(t[0-9]|a1)[a-z]*\\.", var.instance_type)) && !can(regex("^[a-z]+[0-9]+g[a-z]*\\.", var.instance_type))
    error_message = "instance_type must be a non-burstable x86_64 type such as m7i.2xlarge (no t*, a1 or Graviton *g types)."
  }
}

variable "clickhouse_version" {
  description = "ClickHouse server package version installed from packages.clickhouse.com (pinned, full version)."
  type        = string
  default     = "25.3.6.56"

  validation {
    condition     = can(regex("^[0-9]{2}\\.[0-9]{1,2}\\.[0-9]+\\.[0-9]+$", var.clickhouse_version))
    error_message = "clickhouse_version must be a full version such as 25.3.6.56."
  }
}

variable "data_volume_size_gb" {
  description = "Size of each node's persistent gp3 data volume in GiB."
  type        = number
  default     = 1000

  validation {
    condition     = var.data_volume_size_gb >= 50 && var.data_volume_size_gb <= 16384
    error_message = "data_volume_size_gb must be between 50 and 16384."
  }
}

variable "data_volume_iops" {
  description = "Provisioned IOPS of each gp3 data volume."
  type        = number
  default     = 6000

  validation {
    condition     = var.data_volume_iops >= 3000 && var.data_volume_iops <= 16000
    error_message = "data_volume_iops must be between 3000 and 16000 (gp3)."
  }
}

variable "data_volume_throughput" {
  description = "Provisioned throughput of each gp3 data volume in MiB/s."
  type        = number
  default     = 500

  validation {
    condition     = var.data_volume_throughput >= 125 && var.data_volume_throughput <= 1000
    error_message = "data_volume_throughput must be between 125 and 1000 MiB/s (gp3)."
  }
}

variable "database" {
  description = "Database the pipeline writes to (STOCKPULSE_CLICKHOUSE__DATABASE)."
  type        = string
  default     = "stockpulse"

  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{0,62}$", var.database))
    error_message = "database must start with a letter and hold only lowercase letters, digits and '_'."
  }
}

variable "username" {
  description = "ClickHouse user of the pipeline."
  type        = string
  default     = "stockpulse"

  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{2,31}$", var.username)) && var.username != "default"
    error_message = "username must be 3-32 lowercase letters, digits or '_' and not 'default'."
  }
}

variable "dns_zone_name" {
  description = "Private Route 53 zone holding the stable node names (ch-1.<zone>, ...)."
  type        = string
  default     = "clickhouse.stockpulse.internal"

  validation {
    condition     = can(regex("^([a-z0-9-]+\\.)+[a-z]{2,}$", var.dns_zone_name))
    error_message = "dns_zone_name must be a DNS name such as clickhouse.stockpulse.internal."
  }
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
