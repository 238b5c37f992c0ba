output "stockpulse_env" {
  description = "Non-secret STOCKPULSE_ settings: env var name => value."
  value       = module.stockpulse.stockpulse_env
}

output "stockpulse_secret_env" {
  description = "Secret STOCKPULSE_ settings: env var name => value."
  value       = module.stockpulse.stockpulse_secret_env
  sensitive   = true
}

output "stockpulse_secret_refs" {
  description = "Secret STOCKPULSE_ settings: env var name => {secret_arn, json_key}."
  value       = module.stockpulse.stockpulse_secret_refs
}

output "eks" {
  description = "EKS cluster, node groups, the pods' IAM role and the image repository."
  value       = module.stockpulse.eks
}

output "network" {
  description = "VPC, subnets and NAT egress IPs."
  value       = module.stockpulse.network
}

output "endpoints" {
  description = "Data-service endpoints (non-secret)."
  value       = module.stockpulse.endpoints
}
