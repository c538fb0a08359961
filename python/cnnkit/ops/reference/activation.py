"""Placeholder for the activation reference ops."""

__all__ = []
