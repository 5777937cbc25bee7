"""Adapters: each implements one port and never imports another adapter, the engine or flows."""
