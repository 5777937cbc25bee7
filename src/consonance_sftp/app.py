"""Composition root: builds the adapters named by the config and hands them to the engine."""

from __future__ import annotations
