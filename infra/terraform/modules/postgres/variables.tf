variable "name" {
  description = "Name prefix (e.g. stockpulse-prod)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,30}[a-z0-9]$", var.name))
    error_message = "name must be 4-32 characters of lowercase letters, digits and '-', starting with a letter."
  }
}

variable "engine_version" {
  description = "RDS PostgreSQL engine version (major or major.minor)."
  type        = string
  default     = "16.6"

  validation {
    condition     = can(regex("^1[4-7](\\.[0-9]+)?$", var.engine_version))
    error_message = "engine_version must be PostgreSQL 14 to 17, e.g. 16 or 16.6."
  }
}

variable "instance_class" {
  description = "Instance class of the primary."
  type        = string
  default     = "db.r7g.large"

  validation {
    condition     = can(regex("^db\\.[a-z0-9]+\\.[a-z0-9]+$", var.instance_class))
    error_message = "instance_class must be an RDS class such as db.r7g.large."
  }
}

variable "replica_instance_class" {
  description = "Instance class of the read replicas (null: same as the primary)."
  type        = string
  default     = null

  validation {
    condition     = var.replica_instance_class == null || can(regex("^db\\.[a-z0-9]+\\.[a-z0-9]+$", var.replica_instance_class))
    error_message = "replica_instance_class must be null or an RDS class such as db.r7g.large."
  }
}

variable "read_replica_count" {
  description = "Number of streaming read replicas (the API reads from the first)."
  type        = number
  default     = 1

  validation {
    condition     = var.read_replica_count >= 0 && var.read_replica_count <= 5 && floor(var.read_replica_count) == var.read_replica_count
    error_message = "read_replica_count must be an integer between 0 and 5."
  }
}

variable "allocated_storage_gb" {
  description = "Initial gp3 storage in GiB."
  type        = number
  default     = 100

  validation {
    condition     = var.allocated_storage_gb >= 20 && var.allocated_storage_gb <= 65536
    error_message = "allocated_storage_gb must be between 20 and 65536."
  }
}

variable "max_allocated_storage_gb" {
  description = "Storage autoscaling ceiling in GiB (must be above allocated_storage_gb)."
  type        = number
  default     = 1000

  validation {
    condition     = var.max_allocated_storage_gb > var.allocated_storage_gb && var.max_allocated_storage_gb <= 65536
    error_message = "max_allocated_storage_gb must be greater than allocated_storage_gb and at most 65536."
  }
}

variable "multi_az" {
  description = "Synchronous standby of the primary in a second AZ."
  type        = bool
  default     = true
}

variable "backup_retention_days" {
  description = "Automated backup retention (read replicas need at least 1)."
  type        = number
  default     = 14

  validation {
    condition     = var.backup_retention_days >= 1 && var.backup_retention_days <= 35
    error_message = "backup_retention_days must be between 1 and 35 (0 would disable backups and read replicas)."
  }
}

variable "deletion_protection" {
  description = "Refuse to delete the instances (turn off explicitly before a planned destroy)."
  type        = bool
  default     = true
}

variable "database_name" {
  description = "Database created on the primary."
  type        = string
  default     = "stockpulse"

  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{0,62}$", var.database_name))
    error_message = "database_name must start with a letter and hold only lowercase letters, digits and '_'."
  }
}

variable "username" {
  description = "Master user name (the pipeline's user)."
  type        = string
  default     = "stockpulse"

  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{0,15}$", var.username)) && !contains(["admin", "postgres", "rdsadmin"], var.username)
    error_message = "username must be 1-16 lowercase letters, digits or '_', and not a reserved name."
  }
}

variable "subnet_ids" {
  description = "Private data subnets (one per AZ)."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 2
    error_message = "RDS needs subnets in at least two AZs."
  }
}

variable "security_group_id" {
  description = "Security group of the instances (ingress only from workloads)."
  type        = string
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
