"""The one exception type for bad input.

Every problem with what the user gave us (a file, a node, an option) is raised as :class:`BadInputError`
with a one-line message that names the thing and says what is wrong with it, in the user's terms.
The CLI turns it into exit status 2 and exactly one stderr line; the Slicer module shows it in a dialog.
"""

from __future__ import annotations

import os


class BadInputError(Exception):
    """Bad input: ``str(err)`` is one line, ``"<subject>: <problem>"``."""

    def __init__(self, subject, problem: str | None = None):
        if problem is None:
            message = str(subject)
            subject = None
        else:
            name = os.fspath(subject) if isinstance(subject, os.PathLike) else subject
            if name is not None and not isinstance(name, str):  # an MRML node
                get_name = getattr(name, "GetName", None)
                name = f"node '{get_name()}'" if get_name else str(name)
            message = f"{name}: {problem}" if name else str(problem)
        self.subject = subject
        self.problem = problem
        # one line, whatever the parts contained
        super().__init__(" ".join(str(message).split()))

    def __str__(self) -> str:
        return self.args[0]


def require(condition: bool, subject, problem: str) -> None:
    """Raise :class:`BadInputError` ``subject: problem`` unless ``condition``."""
    if not condition:
        raise BadInputError(subject, problem)
