output "vpc_id" {
  description = "ID of the VPC."
  value       = aws_vpc.this.id
}

output "vpc_cidr" {
  description = "CIDR of the VPC."
  value       = aws_vpc.this.cidr_block
}

output "azs" {
  description = "Availability zones in use, in subnet order."
  value       = local.azs
}

output "private_subnet_ids" {
  description = "Private subnets for workloads (EKS node groups), one per AZ."
  value       = aws_subnet.private[*].id
}

output "data_subnet_ids" {
  description = "Private subnets for data services (MSK, ElastiCache, RDS, ClickHouse), one per AZ."
  value       = aws_subnet.data[*].id
}

output "public_subnet_ids" {
  description = "Public subnets (NAT gateways only), one per AZ."
  value       = aws_subnet.public[*].id
}

output "nat_public_ips" {
  description = "Egress IPs of the NAT gateways (allow-list these at market-data vendors)."
  value       = aws_eip.nat[*].public_ip
}

output "workload_security_group_id" {
  description = "Security group to attach to EKS nodes: the only source the data services accept."
  value       = aws_security_group.workload.id
}

output "msk_security_group_id" {
  description = "Security group of the MSK brokers."
  value       = aws_security_group.data["msk"].id
}

output "redis_security_group_id" {
  description = "Security group of the ElastiCache replication group."
  value       = aws_security_group.data["redis"].id
}

output "postgres_security_group_id" {
  description = "Security group of the RDS instances."
  value       = aws_security_group.data["postgres"].id
}

output "clickhouse_security_group_id" {
  description = "Security group of the ClickHouse hosts."
  value       = aws_security_group.data["clickhouse"].id
}
