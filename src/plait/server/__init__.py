"""Plait server."""
