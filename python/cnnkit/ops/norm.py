"""Placeholder for the norm ops."""

__all__ = []
