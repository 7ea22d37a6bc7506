"""Plait runtime."""
