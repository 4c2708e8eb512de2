"""The one user-facing error type, shared by `data` and `googlenet` (data is the lower layer).

A `UserError` is bad input the user can fix (config value, dataset, checkpoint, path). Its message is one
line that names the problem and the fix; entry points print it and exit with status 2, never a traceback.
"""

EXIT_USER_ERROR = 2


class UserError(Exception):
    """Bad input from the user. Entry points print it as one line and exit 2."""

    def __init__(self, message: str = ""):
        # torch's DataLoader re-raises a worker's exception in the main process as the same type, built from
        # "Caught UserError in DataLoader worker process N. Original Traceback ...": keep only the message
        if message.startswith("Caught UserError") and "UserError: " in message:
            message = message.rsplit("UserError: ", 1)[1].strip()
        super().__init__(message)
