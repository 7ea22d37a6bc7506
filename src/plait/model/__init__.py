"""Plait model."""
