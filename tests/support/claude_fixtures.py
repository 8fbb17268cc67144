"""Shared pytest fixtures (see tests/conftest.py)."""
