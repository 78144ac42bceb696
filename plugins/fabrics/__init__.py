"""Fabric plugins: one module each, each defining ``FABRIC`` (a target.fabric.FabricOps)."""
