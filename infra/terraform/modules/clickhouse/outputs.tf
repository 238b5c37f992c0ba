output "http_url" {
  description = "HTTP endpoint of the cluster through the internal NLB (STOCKPULSE_CLICKHOUSE__URL)."
  value       = "http://${aws_lb.this.dns_name}:8123"
}

output "node_hostnames" {
  description = "Stable private DNS names of the nodes (replicas)."
  value       = local.node_names
}

output "database" {
  description = "Database of the pipeline (STOCKPULSE_CLICKHOUSE__DATABASE)."
  value       = var.database
}

output "username" {
  description = "ClickHouse user of the pipeline (STOCKPULSE_CLICKHOUSE__USERNAME)."
  value       = var.username
}

output "password" {
  description = "Password of that user (STOCKPULSE_CLICKHOUSE__PASSWORD); also in Secrets Manager: secret_arn."
  value       = aws_secretsmanager_secret_version.user.secret_string
  sensitive   = true
}

output "secret_arn" {
  description = "Secrets Manager ARN of the password (plain string)."
  value       = aws_secretsmanager_secret.user.arn
}

output "kms_key_arn" {
  description = "KMS key encrypting the volumes and the secret."
  value       = aws_kms_key.clickhouse.arn
}

output "autoscaling_group_names" {
  description = "One single-instance ASG per node."
  value       = aws_autoscaling_group.node[*].name
}
