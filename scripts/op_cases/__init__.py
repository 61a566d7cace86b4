"""Operator fixture cases: one module per operator group, each with a module-level ``CASES``."""
