"""`python -m benchmarks.ab_loop` in a checkout: the benchmark ships with the package as
clip_depth_ros/benchmarks/ab_loop.py; this name is an alias of it."""
import sys

from clip_depth_ros.benchmarks import ab_loop as _impl

if __name__ == "__main__":
    sys.exit(_impl.main())
sys.modules[__name__] = _impl
