"""Plait ops."""
