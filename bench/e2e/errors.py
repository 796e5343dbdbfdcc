"""The one exception that means "the harness itself is broken" (exit status 3), never "the relay is slow"."""


class HarnessError(RuntimeError):
    """Raised when the lab, the generator or the counter cannot be trusted; the run must stop."""


class NotCarried(RuntimeError):
    """A row's relay did not do the work its label claims (mcrelay-xdp: the XDP program did not
    carry the trial). The row is marked INVALID, the run goes on with the next row and ends with
    exit status 1: never a figure under the wrong label."""
