"""Plait store."""
