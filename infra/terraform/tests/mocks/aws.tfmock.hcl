# Mocked AWS data sources for the offline `terraform test` runs of every environment root
# (envs/*/tests/*.tftest.hcl: mock_provider "aws" { source = "../../tests/mocks" }). Resources are
# mocked by Terraform itself: computed attributes stay unknown in a plan.
mock_data "aws_availability_zones" {
  defaults = { names = ["eu-west-1a", "eu-west-1b", "eu-west-1c", "eu-west-1d"] }
}
mock_data "aws_region" {
  defaults = { name = "eu-west-1" }
}
mock_data "aws_partition" {
  defaults = { partition = "aws" }
}
mock_data "aws_caller_identity" {
  defaults = { account_id = "123456789012" }
}
mock_data "aws_iam_policy_document" {
  defaults = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}" }
}
mock_data "aws_ssm_parameter" {
  defaults = { insecure_value = "ami-0123456789abcdef0" }
}
mock_data "aws_subnet" {
  defaults = { availability_zone = "eu-west-1a" }
}
mock_data "aws_vpc" {
  defaults = { cidr_block = "10.0.0.0/16" }
}
mock_data "aws_secretsmanager_random_password" {
  defaults = { random_password = "MockPassword0123456789abcdefghijABCDEFGHIJ" }
}
