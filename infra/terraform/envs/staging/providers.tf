provider "aws" {
  region = var.region

  default_tags {
    tags = {
      Project     = "stockpulse-stream"
      Environment = local.environment
      ManagedBy   = "terraform"
    }
  }
}
