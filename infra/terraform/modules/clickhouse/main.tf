# ClickHouse on EC2. Each node is an auto scaling group of exactly one instance pinned to one AZ,
# with a persistent, encrypted gp3 data volume that outlives the instance: when EC2 replaces a
# failed node, the new instance attaches the same volume at boot, re-registers its stable private
# DNS name (ch-N.<zone>) and rejoins the ReplicatedMergeTree replicas and the Keeper quorum.
# Clients reach the cluster through an internal NLB on port 8123 (HTTP).
#
# Why not an ASG of N identical instances: ClickHouse replicas are stateful and need stable
# identities (replica macros, Keeper server ids); one ASG per node gives self-healing without
# losing either. Why not a managed service: ClickHouse Cloud is outside the AWS provider.

data "aws_region" "current" {}

data "aws_subnet" "node" {
  count = var.node_count
  id    = var.subnet_ids[count.index % length(var.subnet_ids)]
}

data "aws_vpc" "this" {
  id = var.vpc_id
}

data "aws_ssm_parameter" "al2023" {
  name = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
}

locals {
  keeper_count = var.node_count >= 3 ? 3 : 1
  node_names   = [for i in range(var.node_count) : "ch-${i + 1}.${var.dns_zone_name}"]
  role_tag     = "${var.name}-clickhouse"
}

resource "aws_kms_key" "clickhouse" {
  description             = "${var.name}: ClickHouse EBS volumes and the user secret"
  deletion_window_in_days = 30
  enable_key_rotation     = true
  tags                    = var.tags
}

resource "aws_kms_alias" "clickhouse" {
  name          = "alias/${var.name}-clickhouse"
  target_key_id = aws_kms_key.clickhouse.key_id
}

# ---------------------------------------------------------------------------------------------
# Credentials of the pipeline's ClickHouse user
# ---------------------------------------------------------------------------------------------
data "aws_secretsmanager_random_password" "user" {
  password_length     = 40
  exclude_punctuation = true
}

resource "aws_secretsmanager_secret" "user" {
  name_prefix             = "${var.name}-stockpulse-clickhouse-"
  description             = "Password of the ClickHouse user ${var.username} on ${var.name} (plain string)"
  kms_key_id              = aws_kms_key.clickhouse.arn
  recovery_window_in_days = 7
  tags                    = var.tags
}

resource "aws_secretsmanager_secret_version" "user" {
  secret_id     = aws_secretsmanager_secret.user.id
  secret_string = data.aws_secretsmanager_random_password.user.random_password

  lifecycle {
    ignore_changes = [secret_string]
  }
}

# ---------------------------------------------------------------------------------------------
# Stable names
# ---------------------------------------------------------------------------------------------
resource "aws_route53_zone" "this" {
  name    = var.dns_zone_name
  comment = "StockPulse ClickHouse nodes on ${var.name} (records are upserted by each node at boot)"

  vpc {
    vpc_id = var.vpc_id
  }

  tags = var.tags
}

# ---------------------------------------------------------------------------------------------
# Persistent data volumes, one per node, in that node's AZ
# ---------------------------------------------------------------------------------------------
resource "aws_ebs_volume" "data" {
  count = var.node_count

  availability_zone = data.aws_subnet.node[count.index].availability_zone
  type              = "gp3"
  size              = var.data_volume_size_gb
  iops              = var.data_volume_iops
  throughput        = var.data_volume_throughput
  encrypted         = true
  kms_key_id        = aws_kms_key.clickhouse.arn

  tags = merge(var.tags, {
    Name           = "${var.name}-clickhouse-${count.index + 1}-data"
    StockPulseRole = local.role_tag
  })
}

# ---------------------------------------------------------------------------------------------
# Instance role: SSM access (no SSH), attach its own volume, upsert its DNS record, read the secret
# ---------------------------------------------------------------------------------------------
data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "node" {
  name_prefix        = "${substr(var.name, 0, 20)}-clickhouse-"
  assume_role_policy = data.aws_iam_policy_document.assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "ssm" {
  role       = aws_iam_role.node.name
  policy_arn = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

data "aws_iam_policy_document" "node" {
  statement {
    sid       = "DescribeVolumes"
    actions   = ["ec2:DescribeVolumes"]
    resources = ["*"]
  }

  statement {
    sid       = "AttachOwnDataVolumes"
    actions   = ["ec2:AttachVolume"]
    resources = ["arn:aws:ec2:*:*:volume/*", "arn:aws:ec2:*:*:instance/*"]

    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/StockPulseRole"
      values   = [local.role_tag]
    }
  }

  statement {
    sid       = "UpsertNodeRecord"
    actions   = ["route53:ChangeResourceRecordSets"]
    resources = [aws_route53_zone.this.arn]
  }

  statement {
    sid       = "ReadUserSecret"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_secretsmanager_secret.user.arn]
  }

  statement {
    sid       = "DecryptUserSecret"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.clickhouse.arn]
  }
}

resource "aws_iam_role_policy" "node" {
  role   = aws_iam_role.node.id
  policy = data.aws_iam_policy_document.node.json
}

resource "aws_iam_instance_profile" "node" {
  name_prefix = "${substr(var.name, 0, 20)}-clickhouse-"
  role        = aws_iam_role.node.name
  tags        = var.tags
}

# ---------------------------------------------------------------------------------------------
# One launch template and one single-instance ASG per node
# ---------------------------------------------------------------------------------------------
resource "aws_launch_template" "node" {
  count = var.node_count

  name_prefix   = "${var.name}-clickhouse-${count.index + 1}-"
  image_id      = data.aws_ssm_parameter.al2023.insecure_value
  instance_type = var.instance_type

  iam_instance_profile {
    arn = aws_iam_instance_profile.node.arn
  }

  vpc_security_group_ids = [var.security_group_id]

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  block_device_mappings {
    device_name = "/dev/xvda"
    ebs {
      volume_type           = "gp3"
      volume_size           = 30
      encrypted             = true
      kms_key_id            = aws_kms_key.clickhouse.arn
      delete_on_termination = true
    }
  }

  monitoring {
    enabled = true
  }

  user_data = base64encode(templatefile("${path.module}/templates/user_data.sh.tftpl", {
    node_index         = count.index + 1
    node_count         = var.node_count
    keeper_count       = local.keeper_count
    zone_name          = var.dns_zone_name
    zone_id            = aws_route53_zone.this.zone_id
    volume_id          = aws_ebs_volume.data[count.index].id
    region             = data.aws_region.current.name
    clickhouse_version = var.clickhouse_version
    database           = var.database
    username           = var.username
    secret_arn         = aws_secretsmanager_secret.user.arn
    vpc_cidr           = data.aws_vpc.this.cidr_block
  }))

  tag_specifications {
    resource_type = "instance"
    tags = merge(var.tags, {
      Name           = "${var.name}-clickhouse-${count.index + 1}"
      StockPulseRole = local.role_tag
    })
  }

  tags = var.tags
}

resource "aws_autoscaling_group" "node" {
  count = var.node_count

  name_prefix               = "${var.name}-clickhouse-${count.index + 1}-"
  min_size                  = 1
  max_size                  = 1
  desired_capacity          = 1
  vpc_zone_identifier       = [data.aws_subnet.node[count.index].id]
  health_check_type         = "EC2"
  health_check_grace_period = 600
  target_group_arns         = [aws_lb_target_group.http.arn]

  launch_template {
    id      = aws_launch_template.node[count.index].id
    version = aws_launch_template.node[count.index].latest_version
  }

  dynamic "tag" {
    for_each = merge(var.tags, { StockPulseRole = local.role_tag, ClickHouseNode = tostring(count.index + 1) })
    content {
      key                 = tag.key
      value               = tag.value
      propagate_at_launch = true
    }
  }
}

# ---------------------------------------------------------------------------------------------
# Internal NLB for the pipeline (HTTP 8123), reachable only from the workload security group
# ---------------------------------------------------------------------------------------------
resource "aws_security_group" "lb" {
  name_prefix = "${var.name}-clickhouse-lb-"
  description = "ClickHouse internal NLB: ingress only from the workload group"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = "${var.name}-clickhouse-lb" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "lb_from_workload" {
  security_group_id            = aws_security_group.lb.id
  referenced_security_group_id = var.workload_security_group_id
  ip_protocol                  = "tcp"
  from_port                    = 8123
  to_port                      = 8123
  description                  = "ClickHouse HTTP from workloads"
  tags                         = var.tags
}

resource "aws_vpc_security_group_egress_rule" "lb_to_nodes" {
  security_group_id            = aws_security_group.lb.id
  referenced_security_group_id = var.security_group_id
  ip_protocol                  = "tcp"
  from_port                    = 8123
  to_port                      = 8123
  description                  = "to the ClickHouse nodes"
  tags                         = var.tags
}

resource "aws_vpc_security_group_ingress_rule" "nodes_from_lb" {
  security_group_id            = var.security_group_id
  referenced_security_group_id = aws_security_group.lb.id
  ip_protocol                  = "tcp"
  from_port                    = 8123
  to_port                      = 8123
  description                  = "ClickHouse HTTP from the internal NLB"
  tags                         = var.tags
}

resource "aws_lb" "this" {
  name_prefix        = "chlb-"
  load_balancer_type = "network"
  internal           = true
  subnets            = var.subnet_ids
  security_groups    = [aws_security_group.lb.id]

  enable_cross_zone_load_balancing = true
  tags                             = var.tags
}

resource "aws_lb_target_group" "http" {
  name_prefix          = "chttp-"
  port                 = 8123
  protocol             = "TCP"
  target_type          = "instance"
  vpc_id               = var.vpc_id
  deregistration_delay = 30

  health_check {
    protocol            = "HTTP"
    port                = "8123"
    path                = "/ping"
    healthy_threshold   = 2
    unhealthy_threshold = 2
    interval            = 10
  }

  tags = var.tags
}

resource "aws_lb_listener" "http" {
  load_balancer_arn = aws_lb.this.arn
  port              = 8123
  protocol          = "TCP"

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.http.arn
  }

  tags = var.tags
}
