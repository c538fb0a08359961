"""Placeholder for the pool ops."""

__all__ = []
