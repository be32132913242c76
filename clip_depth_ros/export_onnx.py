"""Export an eval-mode DepthModel's ``infer`` to ONNX: fixed 1x3xHxW input, text side constant.

The graph is the model's whole camera contract (``DepthModel.infer``): input ``image``
(normalised float32 NCHW) and, for camera-aware models, ``f_px`` (the focal length in pixels
at the source image's resolution, 0 = unknown lens) and ``image_width`` (that image's width),
converted inside; output ``depth`` (1x1xHxW metric metres, clamped).  The model config travels
in the ONNX ``metadata_props`` (so a .onnx alone is enough) and in a JSON sidecar next to it.
``export_onnx(check_forward=True)`` runs the graph in onnxruntime against torch right away
(timm's habit): a graph that differs is removed, never cached.  ``training/export.py`` adds
the CLI and the graph-size checks.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import torch

from .config import ModelConfig, resolve_weights
from .errors import BackendError, ConfigError, MissingDependencyError
from .atomic_io import file_sha256, write_bytes_atomic
from .weights import read_sidecar

log = logging.getLogger("clip_depth_ros")

INPUT_NAME = "image"
FOCAL_INPUT = "f_px"  # focal length (px) at the source image's resolution; 0 = unknown
WIDTH_INPUT = "image_width"  # the source image's width (px)
CAMERA_INPUTS = (FOCAL_INPUT, WIDTH_INPUT)
OUTPUT_NAME = "depth"
CONFIDENCE_OUTPUT = "confidence"  # models with bins or an uncertainty head: [1, 1, H, W] 0..1
DEFAULT_TOLERANCE_M = 1e-3
DEFAULT_OPSET = 17
FORMAT = "clip_depth_ros.onnx/2"  # /2: the graph is infer (camera inputs), not forward
_METADATA_KEYS = ("name", "backbone", "method", "input_size", "mean", "std", "min_depth",
                  "max_depth", "canonical_focal_px", "camera_aware_scale")


def _onnx():
    try:
        import onnx
    except ImportError:  # MissingDependencyError is an ImportError too
        raise MissingDependencyError("ONNX export needs the 'onnx' package: pip install onnx "
                                     "(or the [onnx] extra of clip_depth_ros)") from None
    return onnx


def onnx_metadata(config: ModelConfig) -> dict[str, str]:
    """The ONNX metadata_props for a model: the contract fields plus the full config JSON."""
    data = config.to_dict()
    props = {"format": FORMAT, "config": json.dumps(data, sort_keys=True),
             "backbone": config.backbone.name}
    for key in _METADATA_KEYS:
        if key != "backbone":
            props[key] = json.dumps(data[key])
    return props


def config_from_metadata(props: Mapping[str, str], source: str = "ONNX file") -> ModelConfig:
    """Rebuild the model config from metadata written by :func:`onnx_metadata`."""
    if "config" not in props:
        raise ConfigError(f"{source} has no clip_depth_ros model config in its metadata; "
                          "export it with `python -m training.export`")
    data = props["config"]
    try:
        return ModelConfig.from_dict(data if isinstance(data, dict) else json.loads(data))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source}: unreadable model config in the metadata: {exc}") from None


def sidecar_path(onnx_path: Union[str, os.PathLike]) -> Path:
    """The JSON sidecar (``model.json``) next to ``model.onnx``."""
    return Path(onnx_path).with_suffix(".json")


def read_onnx_metadata(onnx_path: Union[str, os.PathLike]) -> dict[str, str]:
    """metadata_props of an ONNX file (weights are not loaded)."""
    model = _onnx().load(str(onnx_path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def read_onnx_config(onnx_path: Union[str, os.PathLike]) -> ModelConfig:
    """The model config of an exported graph: its metadata, else its JSON sidecar."""
    path = Path(onnx_path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"ONNX file not found: {path}")
    try:
        return config_from_metadata(read_onnx_metadata(path), str(path))
    except ImportError:
        side = sidecar_path(path)
        if not side.is_file():
            raise
        return config_from_metadata(json.loads(side.read_text()), str(side))


class ExportCheckError(BackendError):
    """The exported graph does not give the same depth as torch."""


def graph_inputs(config: ModelConfig) -> tuple[str, ...]:
    """The input names of a model's exported graph: the image, plus the camera for
    camera-aware models (the only ones whose depth depends on it)."""
    return (INPUT_NAME, *CAMERA_INPUTS) if config.camera_aware_scale else (INPUT_NAME,)


def graph_outputs(config: ModelConfig) -> tuple[str, ...]:
    """The output names of a model's exported graph: depth, plus the model's confidence when
    it has one (bin heads, an uncertainty head)."""
    return (OUTPUT_NAME, CONFIDENCE_OUTPUT) if config.has_confidence else (OUTPUT_NAME,)


class _InferGraph(torch.nn.Module):
    """``DepthModel.infer`` (with its confidence, when the model has one) as a module, so the
    exporter traces the camera contract too."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor, f_px: Optional[torch.Tensor] = None,
                image_width: Optional[torch.Tensor] = None) -> Any:
        """Metric depth (and confidence) for a normalised batch and its camera."""
        if self.model.config.has_confidence:
            return self.model.infer_with_confidence(image, f_px, image_width)
        return self.model.infer(image, f_px, image_width)


def probe_feeds(config: ModelConfig, n_random: int = 2, seed: int = 0) -> list[dict[str, Any]]:
    """Graph feeds for checking an export: random images and a rendered synthetic room at the
    model input size; camera-aware models also see an unknown lens and two real ones."""
    import numpy as np
    from .preprocessing import normalize_nchw, resize_to_input
    from .geometry import Intrinsics
    from .synthetic import demo_trajectory, random_indoor_scene, render
    height, width = config.input_hw
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(n_random)]
    scene = random_indoor_scene(seed)
    f_canon = config.canonical_focal_px
    intrinsics = Intrinsics(f_canon, f_canon, (width - 1) / 2, (height - 1) / 2, width, height)
    images.append(resize_to_input(render(scene, demo_trajectory(scene, 1)[0], intrinsics)[0],
                                  config))
    # (f_px, image_width): unknown lens, then 640-wide cameras of 400 and 800 px focal length
    cameras = [(0.0, 640.0), (400.0, 640.0), (800.0, 640.0)] if config.camera_aware_scale \
        else [(0.0, 640.0)]
    feeds = []
    for i, image in enumerate(images):
        f_px, image_w = cameras[i % len(cameras)]
        feed = {INPUT_NAME: normalize_nchw(image, config)}
        if config.camera_aware_scale:
            feed[FOCAL_INPUT] = np.array([f_px], np.float32)
            feed[WIDTH_INPUT] = np.array([image_w], np.float32)
        feeds.append(feed)
    return feeds


def check_forward(model: torch.nn.Module, onnx_path: Union[str, os.PathLike],
                  feeds: Optional[list[dict[str, Any]]] = None,
                  tolerance_m: float = DEFAULT_TOLERANCE_M) -> float:
    """Max |depth_onnxruntime - depth_torch| in metres over ``feeds`` (default
    :func:`probe_feeds`); raises :class:`ExportCheckError` above ``tolerance_m`` or on NaN."""
    import numpy as np
    try:
        import onnxruntime as ort
    except ImportError:
        raise MissingDependencyError("the export's parity check needs the 'onnxruntime' "
                                     "package: pip install onnxruntime (or the [onnx] extra "
                                     "of clip_depth_ros)") from None
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    device = next(model.parameters()).device
    names = [i.name for i in session.get_inputs()]
    max_diff = 0.0
    for feed in probe_feeds(model.config) if feeds is None else feeds:
        args = [torch.from_numpy(feed[n]).to(device) for n in graph_inputs(model.config)]
        with torch.no_grad():
            expected = model.infer(*args).float().cpu().numpy()
        got = session.run([OUTPUT_NAME], {n: feed[n] for n in names})[0]
        if model.config.has_confidence:  # the confidence output must match as well
            with torch.no_grad():
                want_conf = model.infer_with_confidence(*args)[1].float().cpu().numpy()
            got_conf = session.run([CONFIDENCE_OUTPUT], {n: feed[n] for n in names})[0]
            conf_diff = float(np.max(np.abs(got_conf.astype(np.float64) - want_conf)))
            if not conf_diff <= 1e-3:
                raise ExportCheckError(f"{onnx_path}: onnxruntime's confidence differs from "
                                       f"torch's by {conf_diff:.3g} (tolerance 1e-3)")
        if got.shape != expected.shape:
            raise ExportCheckError(f"{onnx_path}: onnxruntime output {got.shape} != torch "
                                   f"{expected.shape}")
        diff = float(np.max(np.abs(got.astype(np.float64) - expected)))
        max_diff = diff if not np.isfinite(diff) else max(max_diff, diff)
        if not np.isfinite(max_diff):
            break
    if not max_diff <= tolerance_m:  # also catches NaN
        raise ExportCheckError(f"{onnx_path}: onnxruntime differs from torch by {max_diff:.3g} m "
                               f"(tolerance {tolerance_m:.3g} m)")
    return max_diff


def export_onnx(model: torch.nn.Module, path: Union[str, os.PathLike],
                opset: int = DEFAULT_OPSET, check: bool = True,
                tolerance_m: float = DEFAULT_TOLERANCE_M) -> Path:
    """Export an eval-mode fp32 DepthModel's ``infer`` to ``path`` (+ ``path``.json).

    The input shape is fixed to the config's input size (batch 1); constants are folded, so
    the text embedding and FiLM parameters become initializers and no text op remains.  With
    ``check`` (the default) the graph is run in onnxruntime against torch at once
    (:func:`check_forward`); a mismatch removes both files and raises ExportCheckError.
    """
    onnx = _onnx()
    if opset < 17:
        raise ConfigError(f"opset must be >= 17 (LayerNormalization), got {opset}")
    if model.training:
        raise ConfigError("export an eval-mode model (create_model(...) without for_training)")
    param = next(model.parameters())
    if param.dtype != torch.float32:
        raise ConfigError(f"export an fp32 model, not {param.dtype}; engines choose precision")
    config: ModelConfig = model.config
    path = Path(path).expanduser()
    _refuse_foreign_sidecar(path)
    height, width = config.input_hw
    inputs = graph_inputs(config)
    example = (torch.zeros(1, 3, height, width, device=param.device),
               torch.full((1,), config.canonical_focal_px, device=param.device),
               torch.full((1,), float(width), device=param.device))[:len(inputs)]
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        raw = Path(tmp) / "raw.onnx"
        _trace_to_onnx(_InferGraph(model).eval(), example, raw, opset, inputs)
        graph = onnx.load(str(raw))
    props = onnx_metadata(config)
    del graph.metadata_props[:]
    for key, value in props.items():
        graph.metadata_props.add(key=key, value=value)
    graph.producer_name = "clip_depth_ros"
    onnx.checker.check_model(graph)
    write_bytes_atomic(path, graph.SerializeToString())
    data = config.to_dict()
    side = {"format": FORMAT, "backbone": config.backbone.name,
            **{key: data[key] for key in _METADATA_KEYS if key != "backbone"}, "config": data,
            "input_names": list(inputs), "output_names": list(graph_outputs(config)),
            "opset": opset,
            "torch": torch.__version__}
    write_bytes_atomic(sidecar_path(path), json.dumps(side, indent=2).encode())
    if check:
        try:
            diff = check_forward(model, path, tolerance_m=tolerance_m)
        except Exception:
            path.unlink(missing_ok=True)
            sidecar_path(path).unlink(missing_ok=True)
            raise
        log.info("export check: onnxruntime matches torch within %.2g m", diff)
    log.info("exported %s (%s, %dx%d, opset %d) to %s", config.name, config.method, width,
             height, opset, path)
    return path


def _refuse_foreign_sidecar(path: Path) -> None:
    """model.onnx's sidecar is model.json: never overwrite a JSON that is not an export's
    (e.g. the sidecar of model.safetensors in the same folder)."""
    side = sidecar_path(path)
    if not side.is_file():
        return
    try:
        fmt = json.loads(side.read_text()).get("format", "")
    except (OSError, ValueError, AttributeError):
        fmt = ""
    if not str(fmt).startswith("clip_depth_ros.onnx"):
        raise ConfigError(f"{side} exists and is not an ONNX export's sidecar (the weights' "
                          f"own?); exporting to {path} would overwrite it: choose another name")


def _trace_to_onnx(module: torch.nn.Module, example: tuple, raw: Path, opset: int,
                   inputs: tuple[str, ...]) -> None:
    """torch.onnx.export with the settings every export here needs."""
    # nn.MultiheadAttention's inference fast path (a fused op) has no ONNX form.
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            # The tracer flags torch's attention shape checks; the input shape is fixed,
            # so they are constants by design.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            # The TorchScript exporter is deprecated in torch >= 2.9, but the torch.export
            # one needs onnxscript, which is not a dependency here.
            warnings.filterwarnings("ignore", category=DeprecationWarning,
                                    module=r"torch\.onnx.*|clip_depth_ros\.export_onnx")
            torch.onnx.export(module, example, str(raw), dynamo=False,
                              opset_version=opset, input_names=list(inputs),
                              output_names=list(graph_outputs(module.model.config)),
                              do_constant_folding=True, export_params=True)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)


def graph_summary(onnx_path: Union[str, os.PathLike]) -> dict[str, Any]:
    """Opset, I/O names and shapes, initializer bytes and op counts of an exported graph."""
    onnx = _onnx()
    model = onnx.load(str(onnx_path))
    from onnx import numpy_helper

    def dims(value_info) -> list:
        return [d.dim_value if d.HasField("dim_value") else d.dim_param
                for d in value_info.type.tensor_type.shape.dim]

    ops: dict[str, int] = {}
    for node in model.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    return {
        "opset": int(opset),
        "inputs": {i.name: dims(i) for i in model.graph.input},
        "outputs": {o.name: dims(o) for o in model.graph.output},
        "initializer_bytes": int(sum(numpy_helper.to_array(t).nbytes
                                     for t in model.graph.initializer)),
        "initializer_shapes": [list(t.dims) for t in model.graph.initializer],
        "file_bytes": Path(onnx_path).stat().st_size,
        "ops": ops,
        "metadata": {p.key: p.value for p in model.metadata_props},
    }


def export_cache_key(config: ModelConfig, weights: Optional[str], backbone: Optional[str],
                     opset: int = DEFAULT_OPSET) -> Optional[str]:
    """A key for an exported graph, or None when the backbone is randomly initialised (a new
    random model each time: never reuse a cached one).  ``backbone`` is the source the
    factory loads (``factory.backbone_source``); weight files count by content."""
    trained = f"file:{file_sha256(weights)}" if weights else "none"
    if weights and "image_encoder" in read_sidecar(weights).get("parts", []):
        source = "in-trained-weights"  # the whole image encoder comes from the weights file
    elif not backbone or backbone == "random":
        return None
    else:
        local = os.path.expanduser(backbone)
        source = f"file:{file_sha256(local)}" if os.path.isfile(local) else f"tag:{backbone}"
    text = json.dumps({"format": FORMAT, "config": config.to_dict(), "backbone": source,
                       "weights": trained, "opset": opset, "torch": torch.__version__},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def cached_export(model: Union[str, ModelConfig, None], weights: Optional[str],
                  backbone_weights: Optional[str], cache_dir: Union[str, os.PathLike],
                  opset: int = DEFAULT_OPSET) -> Path:
    """Export model/weights into ``cache_dir`` once (checked against torch) and reuse it while
    what would be loaded is the same; models with a random backbone are exported afresh."""
    from .model.factory import backbone_source, create_model, resolve_config
    weights = resolve_weights(weights) if weights else weights  # bundled names, e.g. demo-mirror
    sidecar = read_sidecar(weights) if weights else {}
    config = resolve_config(model or None, weights, sidecar or None)
    cache_dir = Path(cache_dir).expanduser()
    key = export_cache_key(config, weights, backbone_source(config, sidecar, backbone_weights),
                           opset)
    stem = re.sub(r"[^\w.-]", "_", config.name)
    if key is None:  # replaced atomically on each export, so files do not pile up
        path = cache_dir / f"{stem}-random.onnx"
    else:
        path = cache_dir / f"{stem}-{key}.onnx"
        if path.is_file() and sidecar_path(path).is_file():
            log.info("using the cached export %s", path)
            return path
    log.info("exporting %s to ONNX in %s (once per model and weights)", config.name, cache_dir)
    depth_model = create_model(model or None, weights=weights, backbone_weights=backbone_weights)
    return export_onnx(depth_model, path, opset)
