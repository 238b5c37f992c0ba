variable "name" {
  description = "Name prefix (e.g. stockpulse-prod)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,30}[a-z0-9]$", var.name))
    error_message = "name must be 4-32 characters of lowercase letters, digits and '-', starting with a letter."
  }
}

variable "engine_version" {
  description = "ElastiCache Redis OSS engine version."
  type        = string
  default     = "7.1"

  validation {
    condition     = can(regex("^[67]\\.[0-9]+$", var.engine_version))
    error_message = "engine_version must be a Redis 6.x or 7.x major.minor version such as 7.1."
  }
}

variable "node_type" {
  description = "Cache node type."
  type        = string
  default     = "cache.r7g.large"

  validation {
    condition     = can(regex("^cache\\.[a-z0-9]+\\.[a-z0-9]+$", var.node_type))
    error_message = "node_type must be an ElastiCache node type such as cache.r7g.large."
  }
}

variable "shards" {
  description = "Number of shards (node groups) of the cluster-mode replication group."
  type        = number
  default     = 3

  validation {
    condition     = var.shards >= 1 && var.shards <= 500 && floor(var.shards) == var.shards
    error_message = "shards must be an integer between 1 and 500."
  }
}

variable "replicas_per_shard" {
  description = "Replicas per shard (at least 1: automatic failover and Multi-AZ need one)."
  type        = number
  default     = 1

  validation {
    condition     = var.replicas_per_shard >= 1 && var.replicas_per_shard <= 5
    error_message = "replicas_per_shard must be between 1 and 5."
  }
}

variable "subnet_ids" {
  description = "Private data subnets (one per AZ)."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 2
    error_message = "At least two subnets in distinct AZs are needed for Multi-AZ."
  }
}

variable "security_group_id" {
  description = "Security group of the cache nodes (ingress only from workloads)."
  type        = string
}

variable "snapshot_retention_days" {
  description = "Days of automatic snapshots to keep (0 disables them)."
  type        = number
  default     = 7

  validation {
    condition     = var.snapshot_retention_days >= 0 && var.snapshot_retention_days <= 35
    error_message = "snapshot_retention_days must be between 0 and 35."
  }
}

variable "log_retention_days" {
  description = "Retention of the slow log in CloudWatch Logs."
  type        = number
  default     = 14

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365], var.log_retention_days)
    error_message = "log_retention_days must be a CloudWatch Logs retention value between 1 and 365."
  }
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
