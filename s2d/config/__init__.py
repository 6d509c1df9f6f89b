"""Structured-config schemas (dataclasses) and their registration with Hydra's ConfigStore."""
from s2d.config.schema import S2DConfig, register_configs, validate_config

__all__ = ["S2DConfig", "register_configs", "validate_config"]
