variable "name" {
  description = "Name prefix (e.g. stockpulse-prod); also the EKS cluster name."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,30}[a-z0-9]$", var.name))
    error_message = "name must be 4-32 characters of lowercase letters, digits and '-', starting with a letter."
  }
}

variable "kubernetes_version" {
  description = "EKS Kubernetes version."
  type        = string
  default     = "1.32"

  validation {
    condition     = can(regex("^1\\.(2[89]|3[0-9])$", var.kubernetes_version))
    error_message = "kubernetes_version must be 1.28 to 1.39, e.g. 1.32."
  }
}

variable "subnet_ids" {
  description = "Private workload subnets (one per AZ) for the control-plane ENIs and the nodes."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 2
    error_message = "EKS needs subnets in at least two AZs."
  }
}

variable "workload_security_group_id" {
  description = "Security group attached to every node: the source the data services accept."
  type        = string
}

variable "endpoint_public_access" {
  description = "Expose the Kubernetes API publicly (restricted to public_access_cidrs). Off: reach it from the VPC (VPN, SSM)."
  type        = bool
  default     = false
}

variable "public_access_cidrs" {
  description = "CIDRs allowed to reach a public API endpoint (never 0.0.0.0/0)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.public_access_cidrs : can(cidrhost(c, 0)) && !contains(["0.0.0.0/0", "::/0"], c)])
    error_message = "public_access_cidrs must be valid CIDRs and must not contain 0.0.0.0/0 or ::/0."
  }
}

variable "cpu_node_group" {
  description = "CPU node group of the pipeline services (feed, price, signal, order, sink, api)."
  type = object({
    instance_types = list(string)
    min_size       = number
    desired_size   = number
    max_size       = number
    disk_size_gb   = number
  })
  default = {
    instance_types = ["c7i.2xlarge"]
    min_size       = 3
    desired_size   = 3
    max_size       = 12
    disk_size_gb   = 50
  }

  validation {
    condition = (
      length(var.cpu_node_group.instance_types) > 0 &&
      var.cpu_node_group.min_size >= 1 &&
      var.cpu_node_group.min_size <= var.cpu_node_group.desired_size &&
      var.cpu_node_group.desired_size <= var.cpu_node_group.max_size &&
      var.cpu_node_group.max_size <= 100 &&
      var.cpu_node_group.disk_size_gb >= 20
    )
    error_message = "cpu_node_group needs instance types, 1 <= min_size <= desired_size <= max_size <= 100 and disk_size_gb >= 20."
  }
}

variable "gpu_node_group" {
  description = "GPU node group for Triton (tainted nvidia.com/gpu=true:NoSchedule)."
  type = object({
    instance_types = list(string)
    min_size       = number
    desired_size   = number
    max_size       = number
    disk_size_gb   = number
  })
  default = {
    instance_types = ["g5.xlarge"]
    min_size       = 1
    desired_size   = 1
    max_size       = 4
    disk_size_gb   = 100
  }

  validation {
    condition = (
      length(var.gpu_node_group.instance_types) > 0 &&
      alltrue([for t in var.gpu_node_group.instance_types : can(regex("^(g[4-6][a-z]*|p[3-5][a-z]*|g6e)\\.", t))]) &&
      var.gpu_node_group.min_size >= 0 &&
      var.gpu_node_group.min_size <= var.gpu_node_group.desired_size &&
      var.gpu_node_group.desired_size <= var.gpu_node_group.max_size &&
      var.gpu_node_group.max_size <= 50 &&
      var.gpu_node_group.disk_size_gb >= 50
    )
    error_message = "gpu_node_group needs NVIDIA instance types (g4-g6*, p3-p5*), 0 <= min_size <= desired_size <= max_size <= 50 and disk_size_gb >= 50."
  }
}

variable "gpu_ami_type" {
  description = "EKS-optimized AMI type with the NVIDIA driver for the GPU node group."
  type        = string
  default     = "AL2023_x86_64_NVIDIA"

  validation {
    condition     = contains(["AL2023_x86_64_NVIDIA", "AL2_x86_64_GPU", "BOTTLEROCKET_x86_64_NVIDIA"], var.gpu_ami_type)
    error_message = "gpu_ami_type must be AL2023_x86_64_NVIDIA, AL2_x86_64_GPU or BOTTLEROCKET_x86_64_NVIDIA."
  }
}

variable "app_namespace" {
  description = "Kubernetes namespace of the pipeline."
  type        = string
  default     = "stockpulse"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", var.app_namespace))
    error_message = "app_namespace must be a valid Kubernetes namespace name."
  }
}

variable "app_service_account" {
  description = "Service account of the pipeline pods; EKS Pod Identity gives it app_secret_arns."
  type        = string
  default     = "stockpulse"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", var.app_service_account))
    error_message = "app_service_account must be a valid Kubernetes name."
  }
}

variable "app_secret_arns" {
  description = "Secrets Manager ARNs the pipeline pods may read (credentials of MSK, Redis, RDS, ClickHouse)."
  type        = list(string)
  default     = []
}

variable "app_kms_key_arns" {
  description = "KMS keys encrypting those secrets (the pods need kms:Decrypt)."
  type        = list(string)
  default     = []
}

variable "cluster_admin_principal_arns" {
  description = "IAM principals (roles/users) granted cluster-admin through EKS access entries."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for a in var.cluster_admin_principal_arns : can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:(role|user)/.+$", a))])
    error_message = "cluster_admin_principal_arns must be IAM role or user ARNs."
  }
}

variable "log_retention_days" {
  description = "Retention of the control-plane logs."
  type        = number
  default     = 30

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
