"""Clothes retrieval: detection, box fusion, metric learning and search, street to shop.

The library never imports Dagster: every stage can be called from a notebook or a test.
The Dagster code location in ``orchestration/`` wraps these functions as assets.
"""

__version__ = "0.1.0"
