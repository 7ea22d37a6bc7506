"""Plait triggers."""
