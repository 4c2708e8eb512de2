"""User-facing errors: one line that names the problem and the fix."""


class UserError(Exception):
    """Bad input from the user (config, dataset, checkpoint). Entry points print it as one line."""
