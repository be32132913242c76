"""One error family for the whole package.

Every mistake a user can make (a bad parameter, model name, weights file, image, bag, export
request) raises a subclass of :class:`ClipDepthError`.  Command-line tools print such an error
as one line and exit with status 2; the node logs it once and stays up.  Anything else that
escapes is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import sys
from typing import NoReturn

USER_ERROR = 2


class ClipDepthError(Exception):
    """Base of every error this package raises for a user's mistake or a refused input."""


class ConfigError(ClipDepthError, ValueError):
    """A model config, parameter or option that is missing, malformed or inconsistent."""


class BackendError(ClipDepthError, RuntimeError):
    """A backend cannot run as asked (missing runtime, device, precision or engine)."""


class DeploymentCheckError(BackendError):
    """An exported graph or engine gives depth that differs from the torch reference."""


class MissingDependencyError(BackendError, ImportError):
    """An optional package (onnxruntime, tensorrt, rosbags, ...) the chosen path needs."""


class OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line too (``<prog>: error: ... (see --help)``,
    exit 2); the usage text stays in ``--help``.  Subparsers it creates are the same kind."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.register("action", "parsers", _OneLineSubparsers)

    def error(self, message: str) -> NoReturn:
        """Print one line on stderr and exit with status 2."""
        text = " ".join(f"{message} (see --help)".split())
        print(f"{self.prog}: error: {text}", file=sys.stderr)
        sys.exit(USER_ERROR)


class _OneLineSubparsers(argparse._SubParsersAction):
    """Subcommand parsers of a OneLineParser are OneLineParsers."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs["parser_class"] = OneLineParser
        super().__init__(*args, **kwargs)
