"""walg: WAL-G for PostgreSQL, rebuilt in Python as a multiprocess pipeline of stages."""

__version__ = "0.1.0"

__all__ = ["__version__"]
