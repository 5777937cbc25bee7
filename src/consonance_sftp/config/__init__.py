"""Configuration: one TOML file loaded into Pydantic v2 models."""
