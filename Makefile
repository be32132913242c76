# One-command set-up and run.  `make demo` runs the main job, `make test` the test suite;
# both create .venv (pinned versions) on first use.  `make test` also runs the live-node
# tests against ROS 2 Jazzy's wheels in a second environment, .venv-jazzy (rclpy 7.x).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP_FLAGS ?= -q
STAMP := $(VENV)/.installed
JAZZY_VENV ?= .venv-jazzy
JAZZY_PY := $(JAZZY_VENV)/bin/python
JAZZY_STAMP := $(JAZZY_VENV)/.installed
# the tests that start node processes and talk to them over a live graph
LIVE_NODE_TESTS := test/test_node_live.py test/test_node_startup.py test/test_multi_camera.py \
	test/test_node_tools.py test/test_node_diagnostics.py
# a ROS environment sourced (or left by the Kilted venv's wheel bootstrapper) would put another
# distribution's rclpy and libraries ahead of Jazzy's
JAZZY_ENV := env -u PYTHONPATH -u LD_LIBRARY_PATH -u AMENT_PREFIX_PATH -u _ROS_WHEELS_BOOTSTRAP_COMPLETE

.PHONY: setup setup-jazzy demo test test-main test-jazzy test-fast bench clean

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

setup-jazzy: $(JAZZY_STAMP)

$(JAZZY_STAMP): requirements/core.txt requirements/ros-jazzy-wheels.txt setup.py
	@test -x $(JAZZY_PY) || $(PYTHON) -m venv $(JAZZY_VENV)
	$(JAZZY_PY) -m pip install $(PIP_FLAGS) --upgrade pip 2>&1 | grep -v "is ignored" || true
	$(JAZZY_PY) -m pip install $(PIP_FLAGS) -r requirements/core.txt 2>&1 | grep -v "is ignored" ; test $${PIPESTATUS[0]} -eq 0
	$(JAZZY_PY) -m pip install $(PIP_FLAGS) -r requirements/ros-jazzy-wheels.txt 2>&1 | grep -v "is ignored" ; test $${PIPESTATUS[0]} -eq 0
	$(JAZZY_PY) -m pip install $(PIP_FLAGS) --no-deps --no-build-isolation -e . 2>&1 | grep -v "is ignored" ; test $${PIPESTATUS[0]} -eq 0
	$(JAZZY_ENV) $(JAZZY_PY) -c "import importlib.metadata as m, rclpy, sensor_msgs; v = m.version('ros-rclpy'); assert v.startswith('7.'), v; print('jazzy environment ok: rclpy', v)"
	@touch $(JAZZY_STAMP)

demo: setup
	$(PY) -m clip_depth_ros.ros.demo $(DEMO_ARGS)

test: test-main test-jazzy

test-main: setup
	$(PY) -m pytest test -q $(PYTEST_ARGS)

# the live-node tests again on ROS 2 Jazzy (LTS) wheels
test-jazzy: setup-jazzy
	$(JAZZY_ENV) $(JAZZY_PY) -m pytest -q $(LIVE_NODE_TESTS) $(PYTEST_ARGS)

test-fast: setup
	$(PY) -m pytest test -q -m "not slow" $(PYTEST_ARGS)

bench: setup
	$(PY) -m clip_depth_ros.cli bench stages $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(JAZZY_VENV) demo_output build *.egg-info .pytest_cache
