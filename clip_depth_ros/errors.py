"""One error family for the whole package.

Every mistake a user can make (a bad parameter, model name, weights file, image, bag, export
request) raises a subclass of :class:`ClipDepthError`.  Command-line tools print such an error
as one line and exit with status 2; the node logs it once and stays up.  Anything else that
escapes is a bug and keeps its traceback.
"""
from __future__ import annotations


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
