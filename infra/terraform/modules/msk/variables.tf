variable "name" {
  description = "Name prefix (e.g. stockpulse-prod)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,30}[a-z0-9]$", var.name))
    error_message = "name must be 4-32 characters of lowercase letters, digits and '-', starting with a letter."
  }
}

variable "kafka_version" {
  description = "MSK Kafka version (e.g. 3.8.x for the latest 3.8 patch MSK offers)."
  type        = string
  default     = "3.8.x"

  validation {
    condition     = can(regex("^[3-9]\\.[0-9]+\\.([0-9]+|x)(\\.kraft)?$", var.kafka_version))
    error_message = "kafka_version must look like 3.8.x, 3.7.x.kraft or 3.6.0 (Kafka 3 or later)."
  }
}

variable "broker_count" {
  description = "Number of brokers; a multiple of the number of subnets (one subnet per AZ)."
  type        = number
  default     = 3

  validation {
    condition     = var.broker_count >= 2 && var.broker_count <= 30 && var.broker_count % length(var.subnet_ids) == 0
    error_message = "broker_count must be between 2 and 30 and a multiple of the number of subnet_ids."
  }
}

variable "instance_type" {
  description = "Broker instance type."
  type        = string
  default     = "kafka.m7g.large"

  validation {
    condition     = can(regex("^kafka\\.[a-z0-9]+\\.[a-z0-9]+$", var.instance_type))
    error_message = "instance_type must be an MSK broker type such as kafka.m7g.large."
  }
}

variable "ebs_volume_size_gb" {
  description = "EBS storage per broker in GiB."
  type        = number
  default     = 500

  validation {
    condition     = var.ebs_volume_size_gb >= 10 && var.ebs_volume_size_gb <= 16384
    error_message = "ebs_volume_size_gb must be between 10 and 16384."
  }
}

variable "subnet_ids" {
  description = "Private data subnets, one per AZ (2 or 3)."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) == 2 || length(var.subnet_ids) == 3
    error_message = "MSK needs exactly 2 or 3 client subnets in distinct AZs."
  }
}

variable "security_group_id" {
  description = "Security group of the brokers (ingress only from workloads)."
  type        = string
}

variable "default_partitions" {
  description = "num.partitions for topics created without an explicit count (topics are created by `stockpulse topics create` with their final counts)."
  type        = number
  default     = 12

  validation {
    condition     = var.default_partitions >= 1 && var.default_partitions <= 1024
    error_message = "default_partitions must be between 1 and 1024."
  }
}

variable "log_retention_hours" {
  description = "log.retention.hours of the cluster."
  type        = number
  default     = 168

  validation {
    condition     = var.log_retention_hours >= 1 && var.log_retention_hours <= 8760
    error_message = "log_retention_hours must be between 1 and 8760."
  }
}

variable "enhanced_monitoring" {
  description = "CloudWatch enhanced monitoring level (PER_TOPIC_PER_PARTITION adds consumer-lag metrics)."
  type        = string
  default     = "PER_TOPIC_PER_PARTITION"

  validation {
    condition     = contains(["DEFAULT", "PER_BROKER", "PER_TOPIC_PER_BROKER", "PER_TOPIC_PER_PARTITION"], var.enhanced_monitoring)
    error_message = "enhanced_monitoring must be DEFAULT, PER_BROKER, PER_TOPIC_PER_BROKER or PER_TOPIC_PER_PARTITION."
  }
}

variable "enable_iam_auth" {
  description = "Also enable IAM access control (port 9098) besides SASL/SCRAM (port 9096)."
  type        = bool
  default     = false
}

variable "sasl_username" {
  description = "SCRAM user the pipeline authenticates as."
  type        = string
  default     = "stockpulse"

  validation {
    condition     = can(regex("^[a-zA-Z][a-zA-Z0-9_.-]{2,63}$", var.sasl_username))
    error_message = "sasl_username must be 3-64 characters of letters, digits, '_', '.' and '-'."
  }
}

variable "log_retention_days" {
  description = "Retention of the broker logs in CloudWatch Logs."
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
