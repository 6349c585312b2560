"""The one exception type the CLI turns into `Error: ...` and exit code 2."""


class ReportgenError(Exception):
    """A problem with the user's input (config, model file, dataset, image).

    The message must fit on one line and say what to fix.
    """
