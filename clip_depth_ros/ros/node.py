"""The depth node: a lifecycle node that adapts ROS topics to :class:`DepthPipeline`.

configure: load the model/engine.  activate: create topics (logged in one line, resolved).
deactivate: remove them.  cleanup: free the model.  /diagnostics runs from start-up in every
state (clip_depth_ros/health.py decides its level).  Subscription callbacks only queue the
latest frame; one worker thread loads the model, then converts, infers and publishes
(model_thread.py says why it must be one thread).  Bad input is counted, logged
(throttled) and skipped.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Optional

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

from ..backends import create_backend, first_that_serves
from ..backends.selfcheck import check_against_torch, probe_frame
from ..camera_sync import CameraInfoPairing
from ..errors import DeploymentCheckError
from ..health import NodeHealth
from ..model_thread import ModelThread
from ..pipeline import DepthPipeline, PipelineSettings
from ..frame import OUTPUT_TOPICS, frame_messages
from .trust_io import TRUST_PARAMS, TrustIO, trust_settings
from .conversions import (ConversionError, RosMessageKit, camera_info_to_intrinsics,
                          compressed_to_rgb8, image_to_rgb8)
from .diagnostics import build_diagnostics
from ..stamps import stamp_ns
from .params import (PARAMS, PARAMS_BY_NAME, backend_candidates, backend_options,
                     check_together, check_value)
from .topics import input_topics, io_qos, topics_line, watched_publisher

THROTTLE_S = 5.0
_PIPELINE_PARAMS = ("point_stride", "max_range_m", "colormap", "display_min_m", "display_max_m")


class DepthNode(LifecycleNode):
    """Monocular depth from a CLIP model: image (+ camera_info) in; depth, points out."""

    def __init__(self, node_name: str = "clip_depth_node", **kwargs: Any):
        super().__init__(node_name, **kwargs)
        # A bad override (-p point_stride:=fast, a YAML bool for a string, out of range) must
        # not kill the process: it keeps its default and the node stays unconfigured, saying so.
        self.bad_overrides: dict[str, str] = {}
        for spec in PARAMS:
            try:
                value = self.declare_parameter(spec.name, spec.default, spec.descriptor()).value
                reason = check_value(spec, value)
            except (InvalidParameterTypeException, InvalidParameterValueException) as exc:
                self.declare_parameter(spec.name, spec.default, spec.descriptor(),
                                       ignore_override=True)
                reason = str(exc)
            if reason:
                self.bad_overrides[spec.name] = reason
        self.bad_overrides.update({" and ".join(names): reason for names, reason
                                   in check_together(self.p).items()})
        for name, reason in sorted(self.bad_overrides.items()):
            self.get_logger().error(f"parameter {name}: bad value given ({reason}); the node "
                                    "stays unconfigured until it is set to a valid value")
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._configured = False
        self._backend = None
        self._pipeline: Optional[DepthPipeline] = None
        self._trust: Optional[TrustIO] = None
        self._worker: ModelThread = ModelThread(lambda item: self._process(*item),
                                                self._frame_failed)
        self._io_lock = threading.Lock()
        self._pubs: dict[str, Any] = {}
        self._subs: list[Any] = []
        self._infos = CameraInfoPairing(self.p("camera_info_tolerance_s"),
                                        self.p("use_latest_camera_info"), maxlen=64)
        self.health = NodeHealth(input_timeout_s=self.p("input_timeout_s"))  # /diagnostics
        if self.bad_overrides:
            self.health.last_error = self._bad_parameters_text()
        # /diagnostics from start-up, in every lifecycle state (unconfigured is an ERROR there)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diag_timer = self.create_timer(self.p("diagnostics_period_s"),
                                             self._publish_diagnostics)

    # ----------------------------------------------------------------- parameters
    def p(self, name: str) -> Any:
        """Current value of a declared parameter."""
        return self.get_parameter(name).value

    def _on_set_parameters(self, params: list) -> SetParametersResult:
        for param in params:
            spec = PARAMS_BY_NAME.get(param.name)
            if spec is None:
                continue
            if not spec.runtime and self._configured:
                return SetParametersResult(successful=False, reason=(
                    f"{param.name} is fixed while the node is configured; deactivate and "
                    "clean up the node, set it, then configure again"))
            reason = check_value(spec, param.value)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
        given = {p.name: p.value for p in params}
        together = check_together(lambda n: given[n] if n in given else self.p(n))
        for involved, reason in together.items():
            if set(involved) & set(given):
                return SetParametersResult(successful=False, reason=reason)
        names = set(given)
        for name in names:
            self.bad_overrides.pop(name, None)  # a valid value replaced a bad override
        for key in [k for k in self.bad_overrides if " and " in k and not together]:
            self.bad_overrides.pop(key)  # the values go together now
        if not self._configured and "bad parameters" in self.health.last_error:
            self.health.last_error = self._bad_parameters_text() if self.bad_overrides else ""
        if "input_timeout_s" in given:
            self.health.input_timeout_s = given["input_timeout_s"]
        if "diagnostics_period_s" in given:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = self.create_timer(given["diagnostics_period_s"],
                                                 self._publish_diagnostics)
        if self._pipeline is not None:
            self._apply_pipeline_settings({p.name: p.value for p in params})
        if self._trust is not None and names & set(TRUST_PARAMS + ("sparse_depth_tolerance_s",)):
            value = lambda n: given[n] if n in given else self.p(n)  # noqa: E731
            self._trust.update(trust_settings(value), value("sparse_depth_tolerance_s"))
        if names & {"qos_input_depth", "qos_output_depth"} and self._pubs:
            # recreate after the new values are committed, outside this callback
            self.create_timer(0.0, self._recreate_io_once)
        return SetParametersResult(successful=True)

    def _pipeline_settings(self, overrides: Optional[dict] = None) -> PipelineSettings:
        values = {n: self.p(n) for n in _PIPELINE_PARAMS}
        values.update({k: v for k, v in (overrides or {}).items() if k in _PIPELINE_PARAMS})
        return PipelineSettings(point_stride=values["point_stride"],
                                max_range_m=values["max_range_m"], colormap=values["colormap"],
                                display_min_m=values["display_min_m"],
                                display_max_m=values["display_max_m"])

    def _apply_pipeline_settings(self, overrides: dict) -> None:
        self._pipeline.settings = self._pipeline_settings(overrides)

    def _recreate_io_once(self) -> None:
        for timer in list(self.timers):
            if timer.timer_period_ns == 0:
                self.destroy_timer(timer)
        self._destroy_io()
        self._create_io()

    # ----------------------------------------------------------------- lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Load the model (or engine) and start the worker thread."""
        if self.bad_overrides:
            self.health.last_error = f"configure refused: {self._bad_parameters_text()}"
            self.get_logger().error(f"not configuring: fix the bad parameters first "
                                    f"({self._bad_parameters_text()})")
            return TransitionCallbackReturn.FAILURE
        try:  # loaded on the thread that runs the frames (model_thread.py says why)
            self._backend = self._worker.start(self._load_backend)
            self._trust = TrustIO(trust_settings(self.p), self.p("sparse_depth_tolerance_s"))
            self._pipeline = DepthPipeline(self._backend, self._pipeline_settings(),
                                           steps=self._trust.steps)
        except Exception as exc:  # any load failure: one clear error, node stays up
            self._release()  # nothing half-configured: a later configure starts clean
            self.health.last_error = f"configure failed: {exc}"
            self.get_logger().error(f"could not load the model: {exc}")
            return TransitionCallbackReturn.FAILURE
        info = self.health.backend = self._backend.describe()
        self.get_logger().info(
            "model {model} ({method} on {backbone}) backend {backend} device {device} "
            "precision {precision} input {input_size}".format(**info)
            + (f" mode {info['mode']}" if "mode" in info else ""))
        self._configured = True
        self.health.last_error = ""
        self.health.set_lifecycle("inactive")
        return TransitionCallbackReturn.SUCCESS

    def _bad_parameters_text(self) -> str:
        return "bad parameters (" + "; ".join(
            f"{k}: {v}" for k, v in sorted(self.bad_overrides.items())) + ")"

    def _load_backend(self) -> Any:
        """The backend, checked against torch when exported (deployment_check) and run once
        so that any compilation, graph capture or engine build happens before frame one;
        ``backend_candidates`` in order, one that refuses handing over to the next."""
        return first_that_serves(backend_candidates(self.p), self._start_backend,
                                 self._backend_skipped)

    def _backend_skipped(self, text: str, exc: Exception) -> None:
        log = self.get_logger()  # two call sites: rclpy refuses one at two severities
        if isinstance(exc, DeploymentCheckError):
            return log.warning(text)
        log.info(text)

    def _start_backend(self, name: str) -> Any:
        kwargs = backend_options(self.p, name)
        backend = create_backend(name, **kwargs)
        try:
            if name != "torch" and self.p("deployment_check"):
                self._deployment_check(backend, kwargs)
            backend.infer_frame(probe_frame()[0])  # warm-up: compile / capture / first run
        except Exception:
            backend.close()
            raise
        return backend

    def _deployment_check(self, backend: Any, kwargs: dict[str, Any]) -> None:
        self.get_logger().info(check_against_torch(backend, kwargs,
                                                   self.p("deployment_check_tolerance")))

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Create subscriptions and publishers; log every topic, resolved, in one line."""
        self._create_io()
        self.get_logger().info(topics_line(self, self._inputs, self.p("input_transport"),
                                           OUTPUT_TOPICS.values()))
        self.health.set_lifecycle("active")
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Remove topics; the model stays loaded."""
        self._destroy_io()
        self.health.set_lifecycle("inactive")
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop the worker and free the model."""
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Free everything on the way out."""
        self._destroy_io()
        self._release()
        self.health.set_lifecycle("finalized")
        self.health.last_error = "shut down"
        return TransitionCallbackReturn.SUCCESS

    def destroy_node(self) -> None:
        """Stop the worker and drop topics first (as on_shutdown): else the DDS participant
        outlives rclpy's shutdown and its 64 MiB shared-memory segment outlives the process."""
        self.on_shutdown(None)
        super().destroy_node()

    def _release(self) -> None:
        if not self._worker.stop():  # a frame still running: it keeps the backend it uses
            self.get_logger().warning("the worker did not stop within 10 s (a frame still "
                                      "running); its model is freed when that frame ends")
        elif self._backend is not None:
            self._backend.close()
        self._backend = self._pipeline = None
        self.health.backend = {}
        self._configured = False
        self.health.set_lifecycle("unconfigured")

    # ----------------------------------------------------------------- topics
    def _create_io(self) -> None:
        in_qos, out_qos = io_qos(self.p)
        transport = self.p("input_transport")
        self._inputs = inputs = input_topics(self, transport, self.p("camera_info_follows_image"))
        self.health.input_topic = self.resolve_topic_name(inputs.image)
        self.health.camera_info_topic = self.resolve_topic_name(inputs.camera_info)
        types = {"depth": Image, "info": CameraInfo, "points": PointCloud2, "colored": Image,
                 "confidence": Image}
        with self._io_lock:
            self._pubs = {key: watched_publisher(self, self.health, types[key], topic, out_qos,
                                                 THROTTLE_S)
                          for key, topic in OUTPUT_TOPICS.items()}
            self._last_stamp_ns: Optional[int] = None  # restarts with every (re)activation
            # frames DDS lost before our callback (best effort) are counted too
            lost = SubscriptionEventCallbacks(message_lost=self._on_message_lost)
            image_type = CompressedImage if transport == "compressed" else Image
            self._subs = [
                self.create_subscription(image_type, inputs.image, self._on_image, in_qos,
                                         event_callbacks=lost),
                self.create_subscription(CameraInfo, inputs.camera_info, self._on_camera_info,
                                         in_qos),
                self.create_subscription(Image, inputs.sparse_depth, self._on_sparse_depth,
                                         in_qos)]

    def _destroy_io(self) -> None:
        with self._io_lock:
            for sub in self._subs:
                self.destroy_subscription(sub)
            for pub in self._pubs.values():
                self.destroy_publisher(pub)
            self._subs, self._pubs = [], {}

    def _on_image(self, msg: Any) -> None:
        """Queue the frame (replacing any waiting one); all work happens in the worker."""
        self.health.image_arrived()
        pixels = int(getattr(msg, "width", 0)) * int(getattr(msg, "height", 0))
        if pixels > self.p("max_image_pixels"):
            self._reject("too_large", f"image {msg.width}x{msg.height} exceeds "
                         f"max_image_pixels={self.p('max_image_pixels')}")
            return
        self.health.frame_queued(replaced=self._worker.put((msg, time.monotonic())))

    def _on_message_lost(self, event: Any) -> None:
        self.health.count("lost_in_transport", event.total_count_change)

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._infos.add(msg, stamp_ns(msg.header.stamp), time.monotonic_ns())

    def _on_sparse_depth(self, msg: Image) -> None:
        self._trust.on_sparse_depth(msg, time.monotonic_ns())

    def _match_camera_info(self, stamp: Any) -> Optional[CameraInfo]:
        # both parameters may change at run time: the pairing follows their current values
        self._infos.tolerance_s = self.p("camera_info_tolerance_s")
        self._infos.use_latest = self.p("use_latest_camera_info")
        return self._infos.match(stamp_ns(stamp))  # no receive time: the latest seen

    def _reject(self, reason: str, detail: str) -> None:
        self.health.problem(f"rejected_{reason}", detail)
        self.get_logger().warning(f"frame rejected ({reason}): {detail}",
                                  throttle_duration_sec=THROTTLE_S)

    # ----------------------------------------------------------------- worker
    def _frame_failed(self, exc: Exception) -> None:
        detail = f"{type(exc).__name__}: {exc}"  # a bug must not kill the worker: count, go on
        self.health.problem("errors", detail)
        self.get_logger().error(f"frame failed: {detail}", throttle_duration_sec=THROTTLE_S)

    def _camera_intrinsics(self, header: Any):
        info = self._match_camera_info(header.stamp)
        topic = self.health.camera_info_topic
        if info is None:
            self.health.set_camera_info("missing")
            self.get_logger().warning(
                f"no camera_info received on {topic} (or none matching the image stamp): "
                "publishing depth only, no points, no camera-aware scale (remap camera_info "
                "to the camera's)", throttle_duration_sec=THROTTLE_S * 6)
            return None, None
        intrinsics = camera_info_to_intrinsics(info)
        if intrinsics is None:  # the frame is still published: not a rejection
            self.health.set_camera_info("invalid")
            self.health.count("camera_info_invalid")
            self.get_logger().warning(
                f"camera_info on {topic} has a zero/invalid focal length or size: this frame "
                "gets depth only (no points, no camera-aware scale)",
                throttle_duration_sec=THROTTLE_S)
            return None, None
        self.health.set_camera_info("ok")
        return info, intrinsics

    def _process(self, msg: Any, t_received: float) -> None:
        try:
            if isinstance(msg, CompressedImage):
                rgb = compressed_to_rgb8(msg)
            else:
                rgb = image_to_rgb8(msg)
        except ConversionError as exc:
            self._reject("bad_image", str(exc))
            return
        stamp = stamp_ns(msg.header.stamp)
        if self._last_stamp_ns is not None and stamp < self._last_stamp_ns:
            # a bag replayed in a loop or a driver restart: process it, but make it visible
            self.health.count("stamps_backwards")
        self._last_stamp_ns = stamp
        info, intrinsics = self._camera_intrinsics(msg.header)
        with self._io_lock:
            pubs = dict(self._pubs)
        if not pubs:
            return
        want_points = intrinsics is not None and pubs["points"].get_subscription_count() > 0
        sparse, problem = self._trust.sparse_for(msg.header.stamp, rgb.shape[:2])
        if problem in ("bad_sparse_depth", "sparse_depth_aspect"):
            self._trust.count_rejection(problem)
            self.get_logger().warning(
                f"sparse_depth on {self.resolve_topic_name('sparse_depth')} not used "
                f"({problem}): it must be 32FC1 m or 16UC1 mm with the image's aspect ratio",
                throttle_duration_sec=THROTTLE_S)
        self._trust.points.want_confidence = pubs["confidence"].get_subscription_count() > 0
        result = self._pipeline.process(
            rgb, intrinsics, want_points=want_points, want_rgb=self.p("points_rgb"),
            want_colored=pubs["colored"].get_subscription_count() > 0, stamp_s=stamp * 1e-9,
            sparse_depth_m=sparse, sparse_problem=problem)
        self.health.trust = self._trust.diagnostics()
        warning = self._trust.warning(self.resolve_topic_name("sparse_depth"))
        if warning:
            self.get_logger().warning(warning, throttle_duration_sec=THROTTLE_S)
        messages = frame_messages(result, msg.header, info, RosMessageKit)
        with self._io_lock:
            if not self._pubs:
                return
            for key, message in messages.items():
                pubs[key].publish(message)
        self.health.frame_published((time.monotonic() - t_received) * 1e3)

    def _publish_diagnostics(self) -> None:
        self._diag_pub.publish(build_diagnostics(self.health, self.get_fully_qualified_name(),
                                                 self.get_clock().now().to_msg()))
