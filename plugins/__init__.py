"""Plugins that ship with simfs: backends (storage) and, later, fabrics."""
