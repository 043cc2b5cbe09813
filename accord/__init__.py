"""Accord: the pieces shared by every package (the error root and exit codes).

`federated`, `privacy` and `crypto` each define one base exception that subclasses
`AccordError`; this package must never import any of them.
"""

from accord.errors import AccordError, ExitCode

__all__ = ["AccordError", "ExitCode"]
