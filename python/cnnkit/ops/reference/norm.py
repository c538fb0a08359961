"""Placeholder for the norm reference ops."""

__all__ = []
