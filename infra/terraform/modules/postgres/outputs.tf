output "primary_endpoint" {
  description = "host:port of the primary."
  value       = aws_db_instance.primary.endpoint
}

output "replica_endpoints" {
  description = "host:port of each read replica."
  value       = aws_db_instance.replica[*].endpoint
}

output "dsn" {
  description = "DSN of the primary (STOCKPULSE_POSTGRES__DSN)."
  value       = local.dsn
  sensitive   = true
}

output "replica_dsn" {
  description = "DSN of the first read replica, or of the primary without replicas (STOCKPULSE_POSTGRES__REPLICA_DSN)."
  value       = local.replica_dsn
  sensitive   = true
}

output "dsn_secret_arn" {
  description = "Secrets Manager ARN holding JSON {dsn, replica_dsn}."
  value       = aws_secretsmanager_secret.dsn.arn
}

output "master_secret_arn" {
  description = "Secrets Manager ARN holding JSON {username, password}."
  value       = aws_secretsmanager_secret.master.arn
}

output "kms_key_arn" {
  description = "KMS key encrypting the instances and the secrets."
  value       = aws_kms_key.postgres.arn
}
