"""Benchmarks (run with python -m benchmarks.<name> in a checkout, or `clip-depth bench`).

The benchmarks that `clip-depth bench` runs ship with the package, in
clip_depth_ros/benchmarks/ (live graph, model latency, pipeline stages); the modules here of
the same name are aliases of those, so `python -m benchmarks.model_latency` keeps working.
"""
