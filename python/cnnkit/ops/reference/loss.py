"""Placeholder for the loss reference ops."""

__all__ = []
