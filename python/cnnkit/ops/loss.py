"""Placeholder for the loss ops."""

__all__ = []
