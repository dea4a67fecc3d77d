"""The one base of every error that names its culprit (a bad option, a config that differs from the run's, a peer
address that does not parse, a checkpoint that does not load...): the command line prints its message as one line,
and a caller of the Python API can catch them all at once. Errors of the round protocol itself (a peer's bad
message) never reach a caller: they are refused and counted where they arrive."""


class DemoNodeError(Exception):
    """Something the user can fix, said in one sentence that names it."""
