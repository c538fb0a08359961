"""Placeholder for the pool reference ops."""

__all__ = []
