"""Placeholder for the activation ops."""

__all__ = []
