"""User-facing errors: one line that names the problem and the fix (defined in `data`, the lower layer)."""
from data.errors import UserError

__all__ = ["UserError"]
