"""Placeholder for the conv reference ops."""

__all__ = []
