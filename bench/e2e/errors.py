"""The one exception that means "the harness itself is broken" (exit status 3), never "the relay is slow"."""


class HarnessError(RuntimeError):
    """Raised when the lab, the generator or the counter cannot be trusted; the run must stop."""
