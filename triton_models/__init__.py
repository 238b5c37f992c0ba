"""triton_models package."""
