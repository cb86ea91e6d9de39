"""The Dagster code location of the clothes-retrieval pipeline (thin assets over the library)."""
