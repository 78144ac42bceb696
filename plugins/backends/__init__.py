"""Backend plugins: one module each, each defining ``BACKEND``."""
