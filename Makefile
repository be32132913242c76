# One-command set-up and run.  `make demo` runs the main job, `make test` the test suite;
# both create .venv (pinned versions) on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP_FLAGS ?= -q
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-fast bench clean

setup: $(STAMP)

$(STAMP): requirements/core.txt requirements/ros-wheels.txt setup.py
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(PIP_FLAGS) --upgrade pip 2>&1 | grep -v "is ignored" || true
	$(PY) -m pip install $(PIP_FLAGS) -r requirements/core.txt 2>&1 | grep -v "is ignored" ; test $${PIPESTATUS[0]} -eq 0
	@if $(PY) -c "import rclpy" 2>/dev/null; then \
	  echo "rclpy found (sourced ROS 2): using it as is"; \
	else \
	  echo "no system rclpy: installing ROS 2 wheels"; \
	  $(PY) -m pip install $(PIP_FLAGS) -r requirements/ros-wheels.txt 2>&1 | grep -v "is ignored" ; test $${PIPESTATUS[0]} -eq 0; \
	fi
	$(PY) -m pip install $(PIP_FLAGS) --no-deps --no-build-isolation -e . 2>&1 | grep -v "is ignored" ; test $${PIPESTATUS[0]} -eq 0
	$(PY) -c "import torch, open_clip, rclpy, sensor_msgs; print('environment ok: torch', torch.__version__)"
	@touch $(STAMP)

demo: setup
	$(PY) -m clip_depth_ros.ros.demo $(DEMO_ARGS)

test: setup
	$(PY) -m pytest test -q $(PYTEST_ARGS)

test-fast: setup
	$(PY) -m pytest test -q -m "not slow" $(PYTEST_ARGS)

bench: setup
	$(PY) benchmarks/pipeline_latency.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) demo_output build *.egg-info .pytest_cache
