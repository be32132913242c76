"""Alias of clip_depth_ros.benchmarks.options (the benchmarks ship with the package)."""
import sys

from clip_depth_ros.benchmarks import options as _impl

sys.modules[__name__] = _impl
