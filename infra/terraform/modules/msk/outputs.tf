output "cluster_arn" {
  description = "ARN of the MSK cluster."
  value       = aws_msk_cluster.this.arn
}

output "bootstrap_brokers_sasl_scram" {
  description = "host:9096,... for SASL_SSL + SCRAM-SHA-512 (STOCKPULSE_KAFKA__BOOTSTRAP_SERVERS)."
  value       = aws_msk_cluster.this.bootstrap_brokers_sasl_scram
}

output "bootstrap_brokers_sasl_iam" {
  description = "host:9098,... for IAM auth (empty unless enable_iam_auth)."
  value       = aws_msk_cluster.this.bootstrap_brokers_sasl_iam
}

output "sasl_mechanism" {
  description = "The SASL mechanism MSK SCRAM uses."
  value       = "SCRAM-SHA-512"
}

output "sasl_username" {
  description = "SCRAM user name."
  value       = var.sasl_username
}

output "sasl_password" {
  description = "SCRAM password (also in Secrets Manager: scram_secret_arn)."
  value       = jsondecode(aws_secretsmanager_secret_version.scram.secret_string)["password"]
  sensitive   = true
}

output "scram_secret_arn" {
  description = "Secrets Manager ARN of the SCRAM credentials (JSON: username, password)."
  value       = aws_secretsmanager_secret.scram.arn
}

output "kms_key_arn" {
  description = "KMS key encrypting MSK storage and the SCRAM secret (workloads reading the secret need kms:Decrypt on it)."
  value       = aws_kms_key.msk.arn
}
