# Security groups. Every ingress rule names a source security group: no CIDR ingress, so no
# 0.0.0.0/0, to any data service. Egress of data services is limited to the VPC, except ClickHouse
# hosts, which need HTTPS out (packages, SSM, Secrets Manager) through the NAT.

resource "aws_security_group" "workload" {
  name_prefix = "${var.name}-workload-"
  description = "StockPulse workloads: EKS nodes and pods (feed, price, signal, order, sink, api, triton)"
  vpc_id      = aws_vpc.this.id
  tags        = merge(var.tags, { Name = "${var.name}-workload" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_security_group" "data" {
  for_each = toset(["msk", "redis", "postgres", "clickhouse"])

  name_prefix = "${var.name}-${each.key}-"
  description = "StockPulse ${each.key}: ingress only from the workload group"
  vpc_id      = aws_vpc.this.id
  tags        = merge(var.tags, { Name = "${var.name}-${each.key}" })

  lifecycle {
    create_before_destroy = true
  }
}

locals {
  # rule => target group, port, source group (never a CIDR), description
  data_ingress = {
    msk_scram       = { sg = "msk", port = 9096, from = "workload", what = "Kafka SASL/SCRAM over TLS" }
    msk_iam         = { sg = "msk", port = 9098, from = "workload", what = "Kafka IAM auth over TLS" }
    msk_jmx         = { sg = "msk", port = 11001, from = "workload", what = "MSK open monitoring: JMX exporter" }
    msk_node        = { sg = "msk", port = 11002, from = "workload", what = "MSK open monitoring: node exporter" }
    redis           = { sg = "redis", port = 6379, from = "workload", what = "Redis (TLS, AUTH)" }
    postgres        = { sg = "postgres", port = 5432, from = "workload", what = "PostgreSQL (TLS)" }
    ch_http         = { sg = "clickhouse", port = 8123, from = "workload", what = "ClickHouse HTTP" }
    ch_native       = { sg = "clickhouse", port = 9000, from = "workload", what = "ClickHouse native" }
    ch_self_http    = { sg = "clickhouse", port = 8123, from = "clickhouse", what = "ClickHouse HTTP between nodes" }
    ch_self_native  = { sg = "clickhouse", port = 9000, from = "clickhouse", what = "ClickHouse distributed queries" }
    ch_self_inter   = { sg = "clickhouse", port = 9009, from = "clickhouse", what = "ClickHouse replication fetches" }
    ch_self_keeper  = { sg = "clickhouse", port = 9181, from = "clickhouse", what = "ClickHouse Keeper client" }
    ch_self_raft    = { sg = "clickhouse", port = 9234, from = "clickhouse", what = "ClickHouse Keeper raft" }
    ch_self_metrics = { sg = "clickhouse", port = 9363, from = "clickhouse", what = "ClickHouse Prometheus endpoint" }
    ch_metrics      = { sg = "clickhouse", port = 9363, from = "workload", what = "ClickHouse Prometheus endpoint (scraped from EKS)" }
  }

  sg_ids = merge(
    { workload = aws_security_group.workload.id },
    { for k, sg in aws_security_group.data : k => sg.id },
  )
}

resource "aws_vpc_security_group_ingress_rule" "data" {
  for_each = local.data_ingress

  security_group_id            = local.sg_ids[each.value.sg]
  referenced_security_group_id = local.sg_ids[each.value.from]
  ip_protocol                  = "tcp"
  from_port                    = each.value.port
  to_port                      = each.value.port
  description                  = each.value.what
  tags                         = var.tags
}

resource "aws_vpc_security_group_ingress_rule" "workload_self" {
  security_group_id            = aws_security_group.workload.id
  referenced_security_group_id = aws_security_group.workload.id
  ip_protocol                  = "-1"
  description                  = "workload to workload (pods on different nodes)"
  tags                         = var.tags
}

resource "aws_vpc_security_group_egress_rule" "workload_all" {
  security_group_id = aws_security_group.workload.id
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "-1"
  description       = "workloads reach the data services, AWS APIs and image registries"
  tags              = var.tags
}

resource "aws_vpc_security_group_egress_rule" "data_vpc" {
  for_each = aws_security_group.data

  security_group_id = each.value.id
  cidr_ipv4         = var.vpc_cidr
  ip_protocol       = "-1"
  description       = "replies and intra-VPC traffic only"
  tags              = var.tags
}

resource "aws_vpc_security_group_egress_rule" "clickhouse_https" {
  security_group_id = aws_security_group.data["clickhouse"].id
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  description       = "ClickHouse hosts: packages, SSM, Secrets Manager, EC2 API over the NAT"
  tags              = var.tags
}
