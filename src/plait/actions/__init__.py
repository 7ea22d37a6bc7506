"""Plait actions."""
