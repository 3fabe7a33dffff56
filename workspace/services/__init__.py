"""Writes of the workspace pages, by topic (API keys: workspace/keys.py)."""
