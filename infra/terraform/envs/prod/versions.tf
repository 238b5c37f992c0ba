terraform {
  required_version = ">= 1.9.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.80, < 6.0"
    }
  }

  # State holds generated credentials: keep it in an encrypted, versioned S3 bucket.
  #   terraform init -backend-config=backend.hcl
  # with backend.hcl giving bucket, key = "stockpulse/prod/terraform.tfstate", region,
  # use_lockfile = true and encrypt = true (kms_key_id optional).
  backend "s3" {}
}
