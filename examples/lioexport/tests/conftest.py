"""The fixtures (configfs, rtslib_root, iscsi_target, simfs_run) come from simfs's pytest
plugin, loaded by pytest because simfs is installed. This file only lets the tests import
lioexport from src/ without installing it."""
import os
import sys

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
sys.path.insert(0, SRC)
