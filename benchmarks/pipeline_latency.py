"""`python -m benchmarks.pipeline_latency` in a checkout: the benchmark ships with the package as
clip_depth_ros/benchmarks/pipeline_latency.py (`clip-depth bench`); this name is an alias of it."""
import sys

from clip_depth_ros.benchmarks import pipeline_latency as _impl

if __name__ == "__main__":
    sys.exit(_impl.main())
sys.modules[__name__] = _impl
