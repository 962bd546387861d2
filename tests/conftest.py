"""Shared pytest set-up: tests import `halolab` (and each area its fixtures) from here."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
