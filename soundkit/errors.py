"""The one error every step and library module raises for a problem the user can fix."""


class PipelineError(RuntimeError):
    """A problem the user can fix (bad input, mismatched files); printed without a traceback."""
