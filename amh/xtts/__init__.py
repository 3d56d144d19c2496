"""The XTTS bridge: release loading, language registration, export."""
from amh.xtts.language import register

__all__ = ["register"]
