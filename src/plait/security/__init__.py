"""Plait security."""
