output "replication_group_id" {
  description = "ID of the replication group."
  value       = aws_elasticache_replication_group.this.id
}

output "configuration_endpoint" {
  description = "host:port of the cluster configuration endpoint (STOCKPULSE_REDIS__STARTUP_NODES)."
  value       = "${aws_elasticache_replication_group.this.configuration_endpoint_address}:${aws_elasticache_replication_group.this.port}"
}

output "auth_token" {
  description = "AUTH token (STOCKPULSE_REDIS__PASSWORD); also in Secrets Manager: auth_secret_arn."
  value       = aws_secretsmanager_secret_version.auth.secret_string
  sensitive   = true
}

output "auth_secret_arn" {
  description = "Secrets Manager ARN of the AUTH token (plain string)."
  value       = aws_secretsmanager_secret.auth.arn
}

output "kms_key_arn" {
  description = "KMS key encrypting the cache and the AUTH token secret."
  value       = aws_kms_key.redis.arn
}
