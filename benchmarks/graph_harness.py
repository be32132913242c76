"""Alias of clip_depth_ros.benchmarks.graph_harness (the benchmarks ship with the package)."""
import sys

from clip_depth_ros.benchmarks import graph_harness as _impl

sys.modules[__name__] = _impl
