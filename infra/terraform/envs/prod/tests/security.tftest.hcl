# The plan that tests/integration/test_infra_security.py checks: one plan of the prod root with the
# values of terraform.tfvars.example and the shared mocked AWS provider. The checks (encryption at
# rest and in transit, no world-open ingress to data ports, RDS deletion protection and backups,
# Redis AUTH + TLS) read the planned resources from
#   terraform test -filter=tests/security.tftest.hcl -var-file=terraform.tfvars.example -json -verbose
# (the "test_plan" message: the same resource_changes as `terraform show -json` of a plan).

mock_provider "aws" {
  source = "../../tests/mocks"
}

run "security_plan" {
  command = plan
}
