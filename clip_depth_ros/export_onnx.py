"""Export an eval-mode DepthModel to ONNX: fixed 1x3xHxW input, the text side a constant.

The graph is image encoder -> head, input ``image`` (normalised float32 NCHW), output ``depth``
(1x1xHxW canonical-camera metres, clamped).  The model config travels in the ONNX
``metadata_props`` (so a .onnx alone is enough) and in a JSON sidecar next to it.  This is the
runtime half of export; ``training/export.py`` adds the CLI and the onnxruntime parity check.
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

from .backends.engine_cache import file_sha256
from .config import ConfigError, ModelConfig, resolve_weights
from .atomic_io import write_bytes_atomic
from .weights import read_sidecar

log = logging.getLogger("clip_depth_ros")

INPUT_NAME = "image"
OUTPUT_NAME = "depth"
DEFAULT_OPSET = 17
FORMAT = "clip_depth_ros.onnx/1"
_METADATA_KEYS = ("name", "backbone", "method", "input_size", "mean", "std", "min_depth",
                  "max_depth", "canonical_focal_px", "camera_aware_scale")


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError("ONNX export needs the 'onnx' package: pip install onnx "
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


def export_onnx(model: torch.nn.Module, path: Union[str, os.PathLike],
                opset: int = DEFAULT_OPSET) -> Path:
    """Export an eval-mode fp32 DepthModel to ``path`` (+ ``path``.json); returns the path.

    The input shape is fixed to the config's input size (batch 1); constants are folded, so
    the text embedding and FiLM parameters become initializers and no text op remains.
    """
    onnx = _onnx()
    if opset < 17:
        raise ValueError(f"opset must be >= 17 (LayerNormalization), got {opset}")
    if model.training:
        raise ValueError("export an eval-mode model (create_model(...) without for_training)")
    param = next(model.parameters())
    if param.dtype != torch.float32:
        raise ValueError(f"export an fp32 model, not {param.dtype}; engines choose precision")
    config: ModelConfig = model.config
    if config.focal_conditioning:
        raise ValueError(f"model '{config.name}' is focal-conditioned: its decoder also takes "
                         "the lens (f_px / canonical_focal_px), an input the exported graph does "
                         "not have yet; run it with backend torch")
    height, width = config.input_hw
    example = torch.zeros(1, 3, height, width, device=param.device)
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        raw = Path(tmp) / "raw.onnx"
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
                torch.onnx.export(model, (example,), str(raw), dynamo=False,
                                  opset_version=opset, input_names=[INPUT_NAME],
                                  output_names=[OUTPUT_NAME], do_constant_folding=True,
                                  export_params=True)
        finally:
            torch.backends.mha.set_fastpath_enabled(fastpath)
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
            "input_name": INPUT_NAME, "output_name": OUTPUT_NAME, "opset": opset,
            "torch": torch.__version__}
    write_bytes_atomic(sidecar_path(path), json.dumps(side, indent=2).encode())
    log.info("exported %s (%s, %dx%d, opset %d) to %s", config.name, config.method, width,
             height, opset, path)
    return path


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


def export_cache_key(config: ModelConfig, weights: Optional[str], backbone_weights: Optional[str],
                     opset: int = DEFAULT_OPSET) -> Optional[str]:
    """A key for an exported graph, or None when the backbone is randomly initialised (a new
    random model each time: never reuse a cached one).  Weight files count by content."""
    trained = f"file:{file_sha256(weights)}" if weights else "none"
    if weights and "image_encoder" in read_sidecar(weights).get("parts", []):
        backbone = "in-trained-weights"  # the whole image encoder comes from the weights file
    else:
        source = config.backbone.pretrained if backbone_weights is None else backbone_weights
        if not source or source == "random":
            return None
        local = os.path.expanduser(source)
        backbone = f"file:{file_sha256(local)}" if os.path.isfile(local) else f"tag:{source}"
    text = json.dumps({"format": FORMAT, "config": config.to_dict(), "backbone": backbone,
                       "weights": trained, "opset": opset, "torch": torch.__version__},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def cached_export(model: Union[str, ModelConfig, None], weights: Optional[str],
                  backbone_weights: Optional[str], cache_dir: Union[str, os.PathLike],
                  opset: int = DEFAULT_OPSET) -> Path:
    """Export model/weights into ``cache_dir`` once and reuse it while the inputs are the same;
    models with a random backbone are exported afresh every time."""
    from .model.factory import create_model, resolve_config
    weights = resolve_weights(weights) if weights else weights  # bundled names, e.g. demo-mirror
    config = resolve_config(model or None, weights)
    cache_dir = Path(cache_dir).expanduser()
    key = export_cache_key(config, weights, backbone_weights, opset)
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
