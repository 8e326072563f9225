"""Mailstead: a self-hosted mail system in one Python package."""

__version__ = "0.1.0"
