"""Helpers every layer may use: errors, progress output, image grids and slugs."""
