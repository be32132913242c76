"""How every training command reports a user's mistake: one line, exit status 2, nothing written.

``@command_main("training.train")`` wraps a command's ``main``: a
:class:`~clip_depth_ros.errors.ClipDepthError` (bad option, config value, model, weights,
data path...) prints ``<prog>: error: <message>`` on stderr and returns 2; anything else is a
bug and keeps its traceback.  :class:`OneLineParser` gives argparse's own usage errors the same
one-line form.  Commands check what they are given before they create any file, so a refused
command leaves nothing behind.
"""
from __future__ import annotations

import functools
import sys
from typing import Callable, Optional

from clip_depth_ros.errors import USER_ERROR, ClipDepthError, OneLineParser  # noqa: F401


Main = Callable[[Optional[list[str]]], int]


def report(prog: str, message: object) -> int:
    """Print one ``<prog>: error: ...`` line on stderr; returns the exit status (2)."""
    text = " ".join(str(message).split())  # one line, even for a multi-line message
    print(f"{prog}: error: {text}", file=sys.stderr)
    return USER_ERROR


def command_main(prog: str) -> Callable[[Main], Main]:
    """Decorate a command's ``main(argv) -> int`` so a ClipDepthError becomes one line + 2."""
    def wrap(main: Main) -> Main:
        @functools.wraps(main)
        def run(argv: Optional[list[str]] = None) -> int:
            try:
                return main(argv)
            except ClipDepthError as exc:
                return report(prog, exc)
        return run
    return wrap
