"""Placeholder for the conv ops."""

__all__ = []
