"""Plait engine."""
