"""The node's parameters: one table, the single source of truth for names, defaults,
descriptions, ranges and whether a parameter may change while the node runs.

config/depth.yaml lists the same parameters with the same defaults (a test checks it).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

from ..anchoring import ANCHORS, MAX_CAMERA_HEIGHT_M, MIN_SPARSE_POINTS
from ..backends import all_precisions, auto_backends, available_backends
from ..config import DEFAULT_WEIGHTS
from ..trust import MAX_SPARSE_TOLERANCE_S, SPARSE_TOLERANCE_S


@dataclass(frozen=True)
class ParamSpec:
    """One declared parameter."""

    name: str
    default: Any
    description: str
    runtime: bool = False  # may change while configured/active
    range: Optional[tuple[float, float, float]] = None  # (from, to, step); step 0 = continuous
    choices: Optional[tuple[str, ...]] = None

    def descriptor(self) -> ParameterDescriptor:
        """The rcl descriptor with description, range and read-only-ness spelled out."""
        desc = self.description
        if self.choices:
            desc += f" One of: {', '.join(self.choices)}."
        if self.range is not None and not isinstance(self.default, bool):
            lo, hi = (int(v) if float(v).is_integer() else v for v in self.range[:2])
            desc += f" Range: {lo} to {hi}."  # also in the YAML, read by people
        desc += " Changeable at runtime." if self.runtime else " Fixed once configured."
        descriptor = ParameterDescriptor(name=self.name, description=desc)
        if self.range is not None:
            lo, hi, step = self.range
            if isinstance(self.default, bool):
                pass
            elif isinstance(self.default, int):
                descriptor.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi),
                                                         step=int(step))]
            else:
                descriptor.floating_point_range = [FloatingPointRange(
                    from_value=float(lo), to_value=float(hi), step=float(step))]
        return descriptor


PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("model", "", "Bundled model name (see `clip-depth models`) or path to a model "
              "config JSON; empty = the config recorded with `weights`. A bundled name with "
              "bundled weights of that name uses them when `weights` is empty."),
    ParamSpec("weights", DEFAULT_WEIGHTS, "Trained parts: a .safetensors file (with its .json "
              f"sidecar) or the name of bundled weights ({DEFAULT_WEIGHTS}: the small camera-aware "
              "demo model trained on synthetic worlds); empty = the bundled weights of `model`, "
              "else none "
              "(then the backbone needs weights: a tag, a file, or 'random' said in words)."),
    ParamSpec("backbone_weights", "", "open_clip pretrained tag (e.g. openai), a local CLIP "
              "weights file (.safetensors, or .pt loaded with weights_only), 'random', or empty "
              "for the model config's own tag."),
    ParamSpec("backend", "auto", "Inference backend; auto = the fastest correct one here: "
              "torch on a GPU; on a CPU with native bf16 (AVX512-BF16 or AMX) openvino where "
              "it is installed, else torch; an option only one backend takes picks it "
              "(torch_compile, torch_fast_path:=always: torch; ort_providers: onnxruntime; "
              "onnx_path: openvino or onnxruntime). onnxruntime, openvino and tensorrt run the "
              "exported ONNX graph, checked against torch at configure.",
              choices=("auto",) + tuple(available_backends())),
    ParamSpec("device", "auto", "Device: auto (cuda when a GPU is visible, else cpu), cpu, "
              "cuda or cuda:N (tensorrt needs cuda)."),
    ParamSpec("precision", "auto", "Numeric precision; auto = the fastest correct one for "
              "the backend and device (torch and openvino: bf16 on a CPU with AVX512-BF16 or "
              "AMX, else fp32; onnxruntime fp32, fp16 only through its tensorrt provider; "
              "tensorrt fp16, int8 with calibration_images_dir).",
              choices=("auto",) + all_precisions()),
    ParamSpec("onnx_path", "", "onnxruntime/openvino/tensorrt: an exported .onnx (its "
              "metadata holds the model config, so model/weights are not needed); empty = "
              "export model/weights into engine_cache_dir on first use."),
    ParamSpec("engine_cache_dir", "~/.cache/clip_depth_ros/engines", "Where onnxruntime, "
              "openvino and tensorrt keep exported graphs and TensorRT engines (keyed by "
              "graph, precision, TensorRT version and GPU; a first engine build can take "
              "minutes)."),
    ParamSpec("calibration_images_dir", "", "tensorrt int8: a folder of representative "
              "images (png/jpg) the INT8 calibration reads; the engine is keyed by them."),
    ParamSpec("deployment_check", True, "onnxruntime/openvino/tensorrt: at configure, "
              "compare depth on a fixed probe frame with the torch model of the same weights "
              "and refuse to activate beyond deployment_check_tolerance (needs torch; false "
              "skips it)."),
    ParamSpec("deployment_check_tolerance", 0.02, "Largest median relative depth difference "
              "the deployment check accepts.", range=(0.0, 1.0, 0.0)),
    ParamSpec("ort_providers", "auto", "onnxruntime execution providers: auto follows `device`; "
              "cuda = CUDA then CPU; tensorrt = TensorRT, CUDA, CPU (installed ones only).",
              choices=("auto", "cpu", "cuda", "tensorrt")),
    ParamSpec("threads", 0, "CPU threads for inference; 0 = library default.",
              range=(0, 256, 1)),
    ParamSpec("torch_fast_path", "auto", "torch: preallocated buffers with pre/post-processing, "
              "points and colours on the device; auto = on for cuda, off for cpu (where the "
              "numpy path is as fast).", choices=("auto", "always", "never")),
    ParamSpec("cuda_graphs", True, "torch on cuda with the fast path: capture each input size "
              "as a CUDA graph (one launch per frame)."),
    ParamSpec("torch_compile", False, "torch: wrap the model in torch.compile (slow first "
              "frame per input size; needs a C++ compiler on the CPU, Triton on CUDA)."),
    ParamSpec("input_transport", "raw", "Subscribe to `image` (raw) or `image/compressed`.",
              choices=("raw", "compressed")),
    ParamSpec("max_image_pixels", 16_777_216, "Images with more pixels are rejected before "
              "any allocation (protects the node from absurd sizes).", runtime=True,
              range=(1, 1_000_000_000, 1)),
    ParamSpec("camera_info_tolerance_s", 0.01, "Pair an image with the camera_info whose "
              "stamp is within this many seconds.", runtime=True, range=(0.0, 10.0, 0.0)),
    ParamSpec("use_latest_camera_info", True, "Without a camera_info of matching stamp, use "
              "the latest one received.", runtime=True),
    ParamSpec("camera_info_follows_image", True, "When `image` is remapped and `camera_info` "
              "is not, listen for camera_info next to the image (<image namespace>/camera_info, "
              "image_transport's rule and clip-depth bag's auto); false = `camera_info` "
              "relative to the node. The startup log names the topic used."),
    ParamSpec("point_stride", 1, "Point cloud decimation: keep every Nth row and column "
              "(1 = organized cloud of the full image).", runtime=True, range=(1, 64, 1)),
    ParamSpec("max_range_m", 0.0, "Points farther than this are NaN; 0 = no limit.",
              runtime=True, range=(0.0, 1000.0, 0.0)),
    ParamSpec("points_rgb", True, "Publish xyzrgb points (else xyz only).", runtime=True),
    ParamSpec("colormap", "turbo", "Colormap of depth/colored.", runtime=True,
              choices=("turbo", "jet", "viridis", "inferno", "magma", "plasma", "gray")),
    ParamSpec("display_min_m", 0.0, "Near end of the colormap of depth/colored in metres; 0 = "
              "from the data (2nd percentile of the depth, smoothed over frames). Must be below "
              "display_max_m when both are set.", runtime=True, range=(0.0, 1000.0, 0.0)),
    ParamSpec("display_max_m", 0.0, "Far end of the colormap of depth/colored in metres; 0 = "
              "from the data (98th percentile, smoothed over frames).", runtime=True,
              range=(0.0, 1000.0, 0.0)),
    ParamSpec("qos_input_depth", 1, "History depth of the image/camera_info subscriptions "
              "(best effort).", runtime=True, range=(1, 100, 1)),
    ParamSpec("qos_output_depth", 1, "History depth of the output publishers.", runtime=True,
              range=(1, 100, 1)),
    ParamSpec("output_reliability", "reliable", "Reliability of the outputs (reliable "
              "connects with RViz's defaults).", choices=("reliable", "best_effort")),
    ParamSpec("diagnostics_period_s", 1.0, "Period of /diagnostics (published from start-up, "
              "also while unconfigured).", runtime=True, range=(0.1, 60.0, 0.0)),
    ParamSpec("input_timeout_s", 3.0, "/diagnostics is OK only while depth was published "
              "within this many seconds; with no image for that long it warns (naming the "
              "topic), and it reports an error when every frame in that time failed.",
              runtime=True, range=(0.1, 3600.0, 0.0)),
    ParamSpec("scale_anchor", "none", "Where the metric scale comes from: none (the model's "
              "own), ground_plane (the floor found in the predicted cloud and camera_height_m "
              "above it), sparse_depth (a robust fit to the sparse_depth topic's measurements). "
              "A failing anchor falls back to the last good scale, then the model's.",
              runtime=True, choices=ANCHORS),
    ParamSpec("camera_height_m", 0.0, "Height of the camera's optical centre above the floor "
              "(from the robot's URDF), for scale_anchor ground_plane; 0 = unset.",
              runtime=True, range=(0.0, MAX_CAMERA_HEIGHT_M, 0.0)),
    ParamSpec("scale_time_constant_s", 1.0, "Time constant of the temporal scale filter (log "
              "space, outliers gated, reset when a jump lasts); 0 = no filtering.",
              runtime=True, range=(0.0, 60.0, 0.0)),
    ParamSpec("sparse_depth_fill", False, "With sparse_depth received: publish measured "
              "pixels as measured and fill the rest with the prediction (anchored; the model's "
              "own metres with scale_anchor none): RGB-D hole filling.", runtime=True),
    ParamSpec("sparse_depth_min_points", 20, "Fewest valid sparse_depth measurements a scale "
              "fit needs.", runtime=True, range=(MIN_SPARSE_POINTS, 1_000_000, 1)),
    ParamSpec("sparse_depth_shift", False, "sparse_depth anchor: also fit a shift in inverse "
              "depth (for affine-invariant models).", runtime=True),
    ParamSpec("sparse_depth_tolerance_s", SPARSE_TOLERANCE_S, "Pair an image with the "
              "sparse_depth message whose stamp is within this many seconds (never an older "
              "one beyond it).", runtime=True, range=(0.0, MAX_SPARSE_TOLERANCE_S, 0.0)),
    ParamSpec("min_confidence", 0.0, "Points whose confidence is below this are dropped from "
              "`points` (never from `depth`); 0 = off.", runtime=True, range=(0.0, 1.0, 0.0)),
    ParamSpec("edge_filter", True, "Remove flying pixels (points on depth discontinuities) "
              "from `points` (never from `depth`).", runtime=True),
    ParamSpec("autostart", True, "Configure and activate on start (plain `ros2 run`); false "
              "leaves the lifecycle to a manager."),
)

PARAMS_BY_NAME = {p.name: p for p in PARAMS}


def check_value(spec: ParamSpec, value: Any) -> Optional[str]:
    """A reason why ``value`` is unacceptable for ``spec``, or None."""
    if spec.choices and value not in spec.choices:
        return f"{spec.name} must be one of {', '.join(spec.choices)}, not '{value}'"
    if spec.range is not None and not isinstance(value, bool):
        lo, hi, _ = spec.range
        if not lo <= value <= hi:
            return f"{spec.name} must be within [{lo}, {hi}], not {value}"
    return None


def check_together(value: Callable[[str], Any]) -> dict[tuple[str, ...], str]:
    """Why values that are each valid do not go together, keyed by the parameters involved
    (``value(name)`` reads one): display_min_m must be below display_max_m when both are set."""
    lo, hi = value("display_min_m"), value("display_max_m")
    if lo and hi and lo >= hi:
        return {("display_min_m", "display_max_m"): (
            f"display_min_m ({lo:g} m) must be below display_max_m ({hi:g} m); set either to "
            "0 to take that end from the data")}
    return {}


def backend_candidates(value: Callable[[str], Any]) -> list[str]:
    """The backends to try in order (``first_that_serves``): the `backend` parameter, or for
    auto :func:`auto_backends` of the device, narrowed by options only some backends take
    (so none is silently unused): torch_compile / torch_fast_path:=always mean torch,
    ort_providers means onnxruntime, calibration_images_dir tensorrt, and an onnx_path the
    backends that run a graph file (openvino where auto would take it, then onnxruntime)."""
    name = value("backend")
    if name != "auto":
        return [name]
    if value("torch_compile") or value("torch_fast_path") == "always":
        return ["torch"]
    if value("ort_providers") != "auto":
        return ["onnxruntime"]
    if value("calibration_images_dir"):
        return ["tensorrt"]
    candidates = auto_backends(value("device"))
    if value("onnx_path"):
        return [b for b in candidates if b != "torch"] + ["onnxruntime"]
    return candidates


def backend_options(value: Callable[[str], Any], backend: Optional[str] = None
                    ) -> dict[str, Any]:
    """create_backend keyword arguments from the parameters (only those ``backend``, default
    the `backend` parameter, takes); ``value(name)`` reads one."""
    backend = backend or value("backend")
    kwargs: dict[str, Any] = dict(
        model=value("model"), weights=value("weights") or None,
        backbone_weights=value("backbone_weights") or None, device=value("device"),
        precision=value("precision"))
    if backend in ("torch", "onnxruntime", "openvino"):
        kwargs["threads"] = value("threads")
    if backend == "torch":
        kwargs.update(fast_path=value("torch_fast_path"), cuda_graphs=value("cuda_graphs"),
                      compile=value("torch_compile"))
    if backend in ("onnxruntime", "openvino", "tensorrt"):
        kwargs.update(onnx_path=value("onnx_path") or None,
                      cache_dir=value("engine_cache_dir"))
    if backend == "onnxruntime":
        kwargs["providers"] = value("ort_providers")
    if backend == "tensorrt":
        kwargs["calibration_images_dir"] = value("calibration_images_dir") or None
    return kwargs


YAML_HEADER = """\
# Parameters of clip_depth_ros's depth node (all of them, with their defaults).
# `ros2 run clip_depth_ros depth_node --ros-args --params-file config/depth.yaml`
# Written by `python -m clip_depth_ros.ros.params > config/depth.yaml` from the node's
# parameter table (clip_depth_ros/ros/params.py), the single source of truth.
# The default is the bundled demo model (weights: demo-mirror). For the ViT-B-16 Mirror model
# point `weights` at its trained parts (+ `backbone_weights: openai`, or a local CLIP file
# when offline); `model` may stay empty, the weights record their config.
# "/**/clip_depth_node" matches the node in any namespace (front/, rear/, ...).
/**/clip_depth_node:
  ros__parameters:
"""


def params_yaml() -> str:
    """config/depth.yaml's text: every parameter with its description as a comment."""
    import json
    import textwrap
    lines = [YAML_HEADER.rstrip("\n")]
    for spec in PARAMS:
        desc = spec.descriptor().description
        lines += textwrap.wrap(desc, 94, initial_indent="    # ", subsequent_indent="    # ")
        lines.append(f"    {spec.name}: {json.dumps(spec.default)}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(params_yaml(), end="")
