"""Reduced-precision ONNX for strongly typed TensorRT (11+): fp16 compute, fp32 where it matters.

TensorRT 11 builds strongly typed networks: a tensor's type in the graph is its type in the
engine, so an fp16 engine needs an fp16 graph.  This converter needs only ``onnx``: an
allowlist of ops (convolutions, matmuls, element-wise and data movement) runs in fp16 with
fp16 weights; everything else stays fp32 -- normalisations and reductions, Softmax, Exp, Log,
Pow, Sqrt, Reciprocal, a Div by a computed tensor (norm denominators), the camera inputs and
all arithmetic on them alone, the clamp and every node that writes a graph output.  A Cast
sits on each edge between the two; graph inputs and outputs stay float32.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Union

import numpy as np

from ..atomic_io import file_sha256, write_bytes_atomic
from ..errors import BackendError

FORMAT = "clip_depth_ros.fp16/1"  # bump when the conversion changes: it names cached graphs
CAMERA_INPUTS = ("f_px", "image_width")  # = export_onnx.CAMERA_INPUTS (no torch import here)
FP16_OPS = frozenset({
    "Conv", "ConvTranspose", "MatMul", "Gemm", "Einsum", "Add", "Sub", "Mul", "Relu", "Erf",
    "Tanh", "Sigmoid", "Gelu", "LeakyRelu", "HardSigmoid", "HardSwish", "Transpose", "Reshape",
    "Flatten", "Squeeze", "Unsqueeze", "Concat", "Slice", "Split", "Gather", "Expand", "Tile",
    "Identity", "Resize", "Pad", "Where", "MaxPool", "AveragePool", "GlobalAveragePool",
    "DepthToSpace", "SpaceToDepth"})
# Input slots whose type the op fixes to float32 whatever its data type (Resize's roi/scales).
FLOAT32_SLOTS = {"Resize": (1, 2)}
# Ops that read any input type: never cast their inputs (Cast's output type is its attribute).
ANY_TYPE_INPUTS = frozenset({"Cast", "Shape", "Size"})
UNSUPPORTED = frozenset({"If", "Loop", "Scan", "CastLike"})  # types flow through attributes
SAFE_DIVISOR = (1e-3, 1e3)  # x / c in fp16 is as good as x * (1/c) for such constants
FP16_MAX = 65504.0


class Fp16ConversionError(BackendError):
    """The graph holds something the fp16 converter does not handle."""


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError("the fp16 graph for TensorRT 11 needs the 'onnx' package: "
                          "pip install onnx") from None
    return onnx


def _inline_constants(graph) -> None:
    """Constant nodes (with a tensor value) become initializers and Identity-of-initializer
    nodes become aliases, so weights are converted once, by what really consumes them."""
    onnx = _onnx()
    inits = {t.name for t in graph.initializer}
    outputs = {o.name for o in graph.output}
    alias: dict[str, str] = {}
    kept = []
    for node in graph.node:
        for i, name in enumerate(node.input):
            node.input[i] = alias.get(name, name)
        value = [a for a in node.attribute if a.name == "value" and a.type == a.TENSOR]
        if node.op_type == "Constant" and value and node.output[0] not in outputs:
            tensor = onnx.TensorProto()
            tensor.CopyFrom(value[0].t)
            tensor.name = node.output[0]
            graph.initializer.append(tensor)
            inits.add(tensor.name)
        elif node.op_type == "Identity" and node.input[0] in inits \
                and node.output[0] not in outputs:
            alias[node.output[0]] = node.input[0]
        else:
            kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)


def _float_tensors(model) -> set[str]:
    """Names of the float32 tensors of the graph (every node output must have a known type)."""
    onnx = _onnx()
    try:
        graph = onnx.shape_inference.infer_shapes(model, strict_mode=True).graph
    except Exception as exc:  # onnx raises several types for a graph it cannot type
        raise Fp16ConversionError(f"fp16 conversion: ONNX type inference failed: {exc}") from None
    types = {v.name: v.type.tensor_type.elem_type
             for v in (*graph.input, *graph.output, *graph.value_info)}
    types.update({t.name: t.data_type for t in graph.initializer})
    for node in graph.node:
        if node.op_type in UNSUPPORTED or any(a.type in (a.GRAPH, a.GRAPHS)
                                              for a in node.attribute):
            raise Fp16ConversionError(f"fp16 conversion does not handle {node.op_type} "
                                      f"({node.name or node.output[0]})")
        missing = [o for o in node.output if o and o not in types]
        if missing:
            raise Fp16ConversionError(f"no type inferred for {missing} ({node.op_type}); the "
                                      "fp16 converter needs a fully typed, fixed-shape graph")
    return {name for name, kind in types.items() if kind == onnx.TensorProto.FLOAT}


def _safe_divisor(name: str, arrays: dict[str, np.ndarray]) -> bool:
    """A constant divisor with no tiny or huge entries (attention and GELU scales)."""
    if name not in arrays:
        return False
    magnitude = np.abs(arrays[name].astype(np.float64))
    return magnitude.size > 0 and bool(np.all((magnitude >= SAFE_DIVISOR[0])
                                              & (magnitude <= SAFE_DIVISOR[1])))


def _node_modes(graph, floats: set[str], arrays: dict[str, np.ndarray],
                camera: Iterable[str]) -> list[bool]:
    """Per node, True to run it in fp16.  A node computed from the camera inputs and constants
    alone is camera arithmetic (focal ratios, log f): it and whatever reads it stay fp32."""
    consts, camera_only = set(arrays), set(camera)
    outputs = {o.name for o in graph.output}
    modes = []
    for node in graph.node:
        ins = [i for i in node.input if i]
        folded = bool(ins) and all(i in consts for i in ins)
        if folded:  # constant subgraphs (text side, FiLM): folded by the runtime, in fp32
            consts.update(o for o in node.output if o)
        reads_camera = any(i in camera_only for i in ins)
        if reads_camera and all(i in camera_only or i in consts or i not in floats for i in ins):
            camera_only.update(o for o in node.output if o)
        allowed = node.op_type in FP16_OPS or (node.op_type == "Div"
                                               and _safe_divisor(node.input[1], arrays))
        modes.append(allowed and not reads_camera and not folded
                     and not any(o in outputs for o in node.output))
    return modes


def _fp16_consumers(graph, modes: list[bool], floats: set[str]) -> dict[str, set[bool]]:
    """For each float tensor, the precisions its consumers read it in."""
    wants: dict[str, set[bool]] = {}
    for node, fp16 in zip(graph.node, modes):
        if node.op_type in ANY_TYPE_INPUTS:
            continue
        fixed = FLOAT32_SLOTS.get(node.op_type, ())
        for slot, name in enumerate(node.input):
            if name in floats:
                wants.setdefault(name, set()).add(fp16 and slot not in fixed)
    return wants


def _to_fp16(array: np.ndarray) -> np.ndarray:
    """fp16 copy, saturating instead of overflowing to inf."""
    return np.clip(array, -FP16_MAX, FP16_MAX).astype(np.float16)


def _rewrite(graph, modes: list[bool], floats: set[str]) -> None:
    """Convert weights, set each float tensor's type by its producer, cast across the edges."""
    onnx = _onnx()
    from onnx import numpy_helper
    f32, f16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    wants = _fp16_consumers(graph, modes, floats)
    declared = {i.name for i in graph.input}  # old-style initializers that are also inputs
    inits = {t.name: t for t in graph.initializer
             if t.name in floats and t.name not in declared}
    dtype = {name: f32 for name in floats}
    for name, tensor in inits.items():  # read in fp16 only: store it in fp16
        if wants.get(name) == {True}:
            tensor.CopyFrom(numpy_helper.from_array(_to_fp16(numpy_helper.to_array(tensor)),
                                                    name))
            dtype[name] = f16
    taken = {n for node in graph.node for n in (*node.input, *node.output)}
    taken.update(t.name for t in (*graph.initializer, *graph.input, *graph.output))
    casts: dict[tuple[str, int], str] = {}
    nodes = []

    def source(name: str, want: int) -> str:
        """``name`` as type ``want``: itself, an fp16 weight copy, or a Cast's output."""
        if dtype[name] == want:
            return name
        if (name, want) not in casts:
            new, k = f"{name}__{'fp16' if want == f16 else 'fp32'}", 0
            while new in taken:
                k, new = k + 1, f"{name}__{'fp16' if want == f16 else 'fp32'}_{k + 1}"
            taken.add(new)
            if name in inits and want == f16:  # a mixed-use weight: a second, fp16 copy (no Cast at run time)
                array = numpy_helper.to_array(inits[name])
                graph.initializer.append(numpy_helper.from_array(_to_fp16(array), new))
            else:
                nodes.append(onnx.helper.make_node("Cast", [name], [new], to=want,
                                                   name=f"{new}_cast"))
            casts[(name, want)] = new
        return casts[(name, want)]

    for node, fp16 in zip(list(graph.node), modes):
        want = f16 if fp16 else f32
        if node.op_type not in ANY_TYPE_INPUTS:
            fixed = FLOAT32_SLOTS.get(node.op_type, ())
            for slot, name in enumerate(node.input):
                if name in floats:
                    node.input[slot] = source(name, f32 if slot in fixed else want)
        if node.op_type != "Cast":  # a Cast's output type is its 'to', unchanged
            dtype.update({o: want for o in node.output if o in floats})
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)


def _drop_unused_initializers(graph) -> None:
    """Weights every consumer now reads as a copy are dead weight in the file."""
    used = {n for node in graph.node for n in node.input} | {o.name for o in graph.output}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def convert_to_fp16(model, camera_inputs: Iterable[str] = CAMERA_INPUTS):
    """An fp16 copy of an fp32 ONNX model (see the module docstring); I/O stays float32."""
    onnx = _onnx()
    from onnx import numpy_helper
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    _inline_constants(graph)
    del graph.value_info[:]  # stale after the rewrite; inference refills it
    floats = _float_tensors(out)
    arrays = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    modes = _node_modes(graph, floats, arrays, camera_inputs)
    _rewrite(graph, modes, floats)
    _drop_unused_initializers(graph)
    out.metadata_props.add(key="precision", value=f"fp16 ({FORMAT})")
    checked = onnx.shape_inference.infer_shapes(out, strict_mode=True)
    onnx.checker.check_model(checked)
    f32 = onnx.TensorProto.FLOAT
    io = [*checked.graph.input, *checked.graph.output]
    if any(v.type.tensor_type.elem_type != f32 for v in io if v.name in floats):
        raise Fp16ConversionError("fp16 conversion changed the type of a graph input/output")
    return out


def precision_summary(model) -> dict[str, int]:
    """Initializer element counts by type and node counts, to see how much runs in fp16."""
    onnx = _onnx()
    counts = {"fp16_params": 0, "fp32_params": 0, "casts": 0, "nodes": len(model.graph.node)}
    for tensor in model.graph.initializer:
        size = int(np.prod(tensor.dims)) if tensor.dims else 1
        if tensor.data_type == onnx.TensorProto.FLOAT16:
            counts["fp16_params"] += size
        elif tensor.data_type == onnx.TensorProto.FLOAT:
            counts["fp32_params"] += size
    counts["casts"] = sum(node.op_type == "Cast" for node in model.graph.node)
    return counts


def fp16_graph(onnx_path: Union[str, os.PathLike], work_dir: Union[str, os.PathLike]) -> Path:
    """The fp16 form of an fp32 graph, converted once into ``work_dir`` and reused while the
    source bytes and the converter are the same."""
    onnx = _onnx()
    source = Path(onnx_path).expanduser()
    tag = file_sha256(source)[:16]
    version = FORMAT.rsplit("/", 1)[-1]
    target = Path(work_dir).expanduser() / f"{source.stem}-{tag}.fp16v{version}.onnx"
    if target.is_file():
        return target
    converted = convert_to_fp16(onnx.load(str(source)))
    write_bytes_atomic(target, converted.SerializeToString())
    return target
