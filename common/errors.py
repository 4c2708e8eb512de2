"""The one user-facing error type, shared by `data` and `googlenet` (data is the lower layer).

A `UserError` is bad input the user can fix (config value, dataset, checkpoint, path). Its message is one
line that names the problem and the fix; entry points print it and exit with status 2, never a traceback.
"""


class UserError(Exception):
    """Bad input from the user. Entry points print it as one line and exit 2."""
