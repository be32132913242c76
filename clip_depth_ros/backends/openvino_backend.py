"""OpenVINO backend: the exported ONNX graph on the CPU through OpenVINO's CPU plugin.

On a CPU that computes bf16 natively (AVX512-BF16 or AMX) it is the fastest correct path this
project has measured (BENCHMARKS.md): OpenVINO fuses the ViT's attention, layer norms and
GELUs and the decoder's norms and FiLM into its convolutions, where torch eager runs them one
op at a time.

Precision ``bf16`` keeps the output layers in float32, as the torch model does
(``model/layers.py``): OpenVINO's bf16 mode would otherwise round the output convolution, and
so depth, to bf16 steps (0.4%: a flat floor would show terraces).  The graph is cut where the
exported model converts to float32 for its output layers (the ``Convert`` that
``layers.conv_fp32`` leaves in front of each output convolution): everything before the cut
runs in bf16, everything after it in float32, as two compiled models.  A graph without that
cut is refused in bf16 (fp32 runs any graph).
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Optional, Union

import numpy as np

from ..config import ModelConfig
from ..errors import BackendError, ConfigError
from ..export_onnx import graph_outputs, read_onnx_config
from .base import check_precision, cpu_has_native_bf16
from .engine_cache import DEFAULT_CACHE_DIR
from .exported import ExportedGraphBackend, check_graph_io, graph_feed, resolve_onnx

import openvino as ov
from openvino import opset13 as ops
from openvino.passes import ConstantFolding, Manager
from openvino.preprocess import PrePostProcessor

log = logging.getLogger("clip_depth_ros")

# the ops whose float32 input marks the start of the float32 output section
_OUTPUT_LAYER_TYPES = ("Convolution",)


def cpu_runs_bf16(core: Optional[Any] = None) -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX-BF16, the rule torch's
    bf16 follows too) and OpenVINO's CPU plugin runs bf16 there.  (The plugin also reports
    bf16 on CPUs with AVX2-VNNI-2 only, where nothing was measured: not taken.)"""
    if not cpu_has_native_bf16():
        return False
    try:
        core = core or ov.Core()
        return "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except RuntimeError:
        return False


def _is_fp32_cut(node: Any) -> bool:
    """A float32 -> float32 Convert feeding only output layers (``conv_fp32``'s ``.float()``)."""
    if node.get_type_name() != "Convert" or node.get_output_element_type(0) != ov.Type.f32 \
            or node.input_value(0).get_element_type() != ov.Type.f32:
        return False
    consumers = [t.get_node() for t in node.output(0).get_target_inputs()]
    return bool(consumers) and all(c.get_type_name() in _OUTPUT_LAYER_TYPES for c in consumers)


def _consumers(node: Any) -> list[Any]:
    return [t.get_node() for out in node.outputs() for t in out.get_target_inputs()]


def _producers(node: Any) -> list[Any]:
    return [v.get_node() for v in node.input_values()]


def _reach(start: list[Any], step: Any, stop: frozenset[str] = frozenset()) -> set[str]:
    """Friendly names of ``start`` and every node reached from it through ``step``
    (:func:`_consumers` downstream, :func:`_producers` upstream), not entering ``stop``."""
    reached: set[str] = set()
    stack = list(start)
    while stack:
        node = stack.pop()
        name = node.get_friendly_name()
        if name in reached or name in stop:
            continue
        reached.add(name)
        stack.extend(step(node))
    return reached


def float32_section(model: Any) -> set[str]:
    """Friendly names of the nodes downstream of the float32 cuts (empty: no cut)."""
    return _reach([n for n in model.get_ordered_ops() if _is_fp32_cut(n)], _consumers)


def _cut_edges(model: Any, tail: set[str]) -> list[tuple[str, int]]:
    """(producer name, output index) of every body output that a tail node reads; graph
    inputs and constants are not edges (the tail has its own)."""
    edges: list[tuple[str, int]] = []
    for node in model.get_ordered_ops():
        if node.get_friendly_name() not in tail:
            continue
        for value in node.input_values():
            producer = value.get_node()
            kind = producer.get_type_name()
            key = (producer.get_friendly_name(), value.get_index())
            if producer.get_friendly_name() in tail or kind in ("Parameter", "Constant") \
                    or key in edges:
                continue
            edges.append(key)
    return edges


def _image_free_ancestors(model: Any, tail: set[str]) -> set[str]:
    """Nodes the tail reads that do not depend on the image (the camera's scale from f_px and
    image_width): computed again in the tail, in float32, rather than in the bf16 body."""
    on_image = _reach([model.get_parameters()[0]], _consumers)
    read = [p for n in model.get_ordered_ops() if n.get_friendly_name() in tail
            for p in _producers(n)]
    return _reach(read, _producers, stop=frozenset(tail | on_image))


def _feeds_cut(value: Any) -> bool:
    """An activation entering the float32 section through a cut (sent across in bf16: it is
    a bf16 tensor in the body anyway); anything else crosses in its own type (e.g. the
    camera's scale stays float32)."""
    return value.get_element_type() == ov.Type.f32 and any(
        _is_fp32_cut(t.get_node()) for t in value.get_target_inputs())


def _by_name(model: Any) -> dict[str, Any]:
    return {n.get_friendly_name(): n for n in model.get_ordered_ops()}


def split_graph(model: Any, source: str = "graph") -> tuple[Any, Any, list[str]]:
    """(body, tail, cut names): ``model`` cut before its float32 output section.  The body's
    outputs are the cut edges (float32 ones as bf16 tensors, named ``cut:i``); the tail takes
    them as inputs of the same names plus the graph inputs it reads itself.  Refused
    (ConfigError) where the graph has no cut, repeats node names, or has an output outside
    the float32 section."""
    model = model.clone()
    # static shapes: shape arithmetic becomes constants, so only tensors cross the cut
    manager = Manager()
    manager.register_pass(ConstantFolding())
    manager.run_passes(model)
    body_src, tail_src = model.clone(), model.clone()  # clones keep the nodes' names
    names_seen = [n.get_friendly_name() for n in model.get_ordered_ops()]
    if len(set(names_seen)) != len(names_seen):
        raise ConfigError(f"{source}: node names repeat; the bf16 split needs unique names: "
                          "use precision fp32 for this graph")
    tail_names = float32_section(tail_src)
    if not tail_names:
        raise ConfigError(f"{source}: no float32 output section found (the float32 Convert in "
                          "front of the output convolution); OpenVINO bf16 would round depth "
                          "to bf16 steps: use precision fp32 for this graph")
    tail_names |= _image_free_ancestors(tail_src, tail_names)
    outside = [r.get_friendly_name() for r in tail_src.get_results()
               if r.get_friendly_name() not in tail_names]
    if outside:
        raise ConfigError(f"{source}: outputs {outside} do not come from the float32 output "
                          "section; use precision fp32 for this graph")
    edges = _cut_edges(tail_src, tail_names)
    names = [f"cut:{i}" for i in range(len(edges))]
    body_nodes, tail_nodes = _by_name(body_src), _by_name(tail_src)
    results = []
    for (producer, index), name in zip(edges, names):
        result = ops.result(body_nodes[producer].output(index))
        result.output(0).get_tensor().set_names({name})
        results.append(result)
    body = ov.Model(results, _used_parameters(body_src, [r.input_value(0) for r in results]),
                    "body")
    params = []
    for (producer, index), name in zip(edges, names):
        value = tail_nodes[producer].output(index)
        narrow = _feeds_cut(value)
        param = ops.parameter(value.get_partial_shape(),
                              ov.Type.bf16 if narrow else value.get_element_type(), name)
        param.output(0).get_tensor().set_names({name})
        feed = ops.convert(param, ov.Type.f32).output(0) if narrow else param.output(0)
        for target in list(value.get_target_inputs()):
            if target.get_node().get_friendly_name() in tail_names:
                target.replace_source_output(feed)
        params.append(param)
    own = [p for p in tail_src.get_parameters()
           if any(t.get_node().get_friendly_name() in tail_names
                  for t in p.output(0).get_target_inputs())]
    tail = ov.Model(tail_src.get_results(), params + own, "tail")
    # bf16 activations cross in the channels-last order both halves compute in (a planar
    # hand-over costs two reorders: about 1 ms of the demo model's frame on 2 cores)
    body_ppp, tail_ppp = PrePostProcessor(body), PrePostProcessor(tail)
    for result, name in zip(results, names):
        if not _feeds_cut(result.input_value(0)):
            continue
        out = body_ppp.output(name)
        out.tensor().set_element_type(ov.Type.bf16)
        shape = result.get_output_partial_shape(0)
        if shape.rank.is_static and shape.rank.get_length() == 4 and shape.is_static:
            n, c, h, w = shape.to_shape()
            out.tensor().set_layout(ov.Layout("NHWC"))
            out.model().set_layout(ov.Layout("NCHW"))
            tail_ppp.input(name).tensor().set_layout(ov.Layout("NHWC")).set_shape([n, h, w, c])
            tail_ppp.input(name).model().set_layout(ov.Layout("NCHW"))
    return body_ppp.build(), tail_ppp.build(), names


def _used_parameters(model: Any, outputs: list[Any]) -> list[Any]:
    """The model's parameters that ``outputs`` depend on, in the model's order."""
    seen = _reach([o.get_node() for o in outputs], _producers)
    return [p for p in model.get_parameters() if p.get_friendly_name() in seen]


class OpenVinoBackend(ExportedGraphBackend):
    """Runs an exported depth graph with OpenVINO on the CPU (fp32, or bf16 with float32
    output layers)."""

    name = "openvino"
    precisions = ("fp32", "bf16")

    @staticmethod
    def auto_precision(device: str = "auto") -> str:
        """bf16 where the CPU computes it natively, else fp32."""
        return "bf16" if cpu_runs_bf16() else "fp32"

    def __init__(self, onnx_path: Optional[str] = None, model: Union[str, ModelConfig, None] = None,
                 weights: Optional[str] = None, backbone_weights: Optional[str] = None,
                 device: str = "auto", precision: str = "fp32", threads: int = 0,
                 cache_dir: str = DEFAULT_CACHE_DIR):
        if device not in ("auto", "cpu"):
            raise ConfigError(f"backend openvino runs on the CPU (device auto or cpu), not "
                              f"'{device}'; for a GPU use torch, onnxruntime or tensorrt")
        check_precision(self.name, precision, self.precisions)
        try:
            core = ov.Core()
        except RuntimeError as exc:  # a broken install: its plugins do not load
            raise BackendError(f"openvino does not start here: {exc}") from exc
        if precision == "bf16" and not cpu_runs_bf16(core):
            raise ConfigError("precision bf16: this CPU does not compute bf16 natively "
                              "(no AVX512-BF16 or AMX); use fp32")
        self.device, self.precision = "cpu", precision
        self.onnx_path = resolve_onnx(onnx_path, model, weights, backbone_weights, cache_dir)
        self.config = read_onnx_config(self.onnx_path)
        self._lock = threading.Lock()  # one frame at a time through the two requests
        try:
            self._compile(core, precision, threads)
        except RuntimeError as exc:  # OpenVINO's own errors: the graph or the plugin
            raise BackendError(f"openvino could not load {self.onnx_path}: "
                               f"{str(exc).strip().splitlines()[-1]}") from exc
        log.info("openvino %s on the CPU (%s), precision %s%s", ov.get_version(),
                 self.onnx_path, precision,
                 f" (float32 output section after {len(self._cut)} cut(s))" if self._cut else "")

    def _compile(self, core: Any, precision: str, threads: int) -> None:
        source = core.read_model(str(self.onnx_path))
        shape = source.get_parameters()[0].get_partial_shape()
        expected = graph_outputs(self.config)  # an output's expected name among its aliases
        outputs = [next((n for n in sorted(o.get_names()) if n in expected), o.get_any_name())
                   for o in source.outputs]
        check_graph_io(self.onnx_path, self.config,
                       [p.get_friendly_name() for p in source.get_parameters()],
                       list(shape.to_shape()) if shape.is_static else [str(shape)], outputs)
        options: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
        if threads > 0:
            options["INFERENCE_NUM_THREADS"] = int(threads)
        if precision == "bf16":
            body, tail, self._cut = split_graph(source, str(self.onnx_path))
            self._body = core.compile_model(body, "CPU", {**options,
                                                          "INFERENCE_PRECISION_HINT": "bf16"})
            self._tail = core.compile_model(tail, "CPU", {**options,
                                                          "INFERENCE_PRECISION_HINT": "f32"})
            self._body_request = self._body.create_infer_request()
        else:
            self._cut = []
            self._body, self._body_request = None, None
            self._tail = core.compile_model(source, "CPU", {**options,
                                                            "INFERENCE_PRECISION_HINT": "f32"})
        self._tail_request = self._tail.create_infer_request()
        # an input answers to several names (ONNX keeps the tensor's aliases): all count
        self._tail_inputs = {n for i in self._tail.inputs for n in i.get_names()}
        self._body_inputs = ({n for i in self._body.inputs for n in i.get_names()}
                             if self._body is not None else set())

    def predict(self, batch: np.ndarray, f_px: np.ndarray,
                image_width: np.ndarray) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """(metric depth, the model's confidence or None), (h, w) float32 at the model input
        size (the graph is ``infer``)."""
        feed = graph_feed(self.config, batch, f_px, image_width)
        with self._lock:
            tail = self._tail_request
            if tail is None:
                raise BackendError("the openvino backend was closed")
            if self._body_request is not None:
                body = self._body_request
                # shared outputs: the request's own buffers, no copy into numpy first
                body.infer({k: v for k, v in feed.items() if k in self._body_inputs},
                           share_outputs=True)
                for name in self._cut:
                    tail.set_tensor(name, body.get_tensor(name))
            tail.infer({k: v for k, v in feed.items() if k in self._tail_inputs},
                       share_outputs=True)
            maps = [np.array(tail.get_tensor(name).data[0, 0], dtype=np.float32)
                    for name in graph_outputs(self.config)]
        return maps[0], (maps[1] if len(maps) > 1 else None)

    def describe(self) -> dict[str, str]:
        """The common fields plus the OpenVINO version and the float32 cut."""
        extra = {"runtime": f"openvino {ov.get_version()}"}
        if self._cut:
            extra["float32_outputs"] = "on"
        return {**super().describe(), **extra}

    def close(self) -> None:
        """Drop the compiled models (waits for a frame in progress)."""
        with self._lock:
            self._body_request = self._tail_request = None
            self._body = self._tail = None

