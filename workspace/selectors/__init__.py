"""Reads of the workspace pages, by topic."""
