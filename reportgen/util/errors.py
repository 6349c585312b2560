"""The one exception type the CLI turns into `Error: ...` and exit code 2."""


class ReportgenError(ValueError):
    """A problem with the user's input (config, model file, dataset, image, an API argument).

    The message must fit on one line and say what to fix. It is a ValueError, so code that catches bad
    arguments the usual way catches it too.
    """
