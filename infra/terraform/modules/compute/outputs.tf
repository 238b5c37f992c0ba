output "cluster_name" {
  description = "EKS cluster name (aws eks update-kubeconfig --name ...)."
  value       = aws_eks_cluster.this.name
}

output "cluster_endpoint" {
  description = "Kubernetes API endpoint."
  value       = aws_eks_cluster.this.endpoint
}

output "cluster_certificate_authority" {
  description = "Base64 CA certificate of the API endpoint."
  value       = aws_eks_cluster.this.certificate_authority[0].data
}

output "cluster_security_group_id" {
  description = "Security group EKS created for the control plane and nodes."
  value       = aws_eks_cluster.this.vpc_config[0].cluster_security_group_id
}

output "node_group_names" {
  description = "Managed node groups by pool (cpu, gpu)."
  value       = { for k, ng in aws_eks_node_group.this : k => ng.node_group_name }
}

output "app_role_arn" {
  description = "IAM role the pipeline's service account assumes through EKS Pod Identity."
  value       = aws_iam_role.app.arn
}

output "ecr_repository_url" {
  description = "ECR repository of the stockpulse image."
  value       = aws_ecr_repository.stockpulse.repository_url
}
