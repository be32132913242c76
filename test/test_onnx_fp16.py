"""The fp16 graph TensorRT 11 builds from, checked for real in onnxruntime on the CPU.

onnxruntime's CPU provider has few fp16 kernels and runs the others in fp32 between casts
it inserts, so this measures the fp16 weights and the fp16 tensors between nodes, not fp16
arithmetic inside the kernels as a GPU would do it.
"""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from model_helpers import camera_aware_config_file

from clip_depth_ros.backends.onnx_fp16 import (Fp16ConversionError, convert_to_fp16, fp16_graph,
                                               precision_summary)
from clip_depth_ros.export_onnx import (CAMERA_INPUTS, OUTPUT_NAME, export_onnx, probe_feeds,
                                        read_onnx_config)
from clip_depth_ros.model import create_model

F32, F16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
FP32_OPS = ("LayerNormalization", "InstanceNormalization", "Softmax", "Sqrt", "Clip", "Log",
            "Reciprocal", "ReduceL2", "ReduceSum")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """name -> (fp32 export, its fp16 form) of a tiny model with random weights, made once."""
    made = {}

    def get(name):
        if name not in made:
            folder = tmp_path_factory.mktemp("fp16")
            config = name
            if name == "camera-aware-fc":  # camera inputs feed the scale and the decoder's FiLM
                config = str(camera_aware_config_file(folder, "tiny-mirror-fc",
                                                      focal_conditioning=True))
            torch.manual_seed(0)
            path = export_onnx(create_model(config, backbone_weights="random"),
                               folder / "model.onnx")
            made[name] = path, fp16_graph(path, folder / "work")
        return made[name]

    return get


@pytest.fixture(params=["tiny-mirror", "camera-aware-fc", "tiny-depthclip"])
def graphs(request, exported):
    """(fp32 export, fp16 form) of each tiny model in turn."""
    return exported(request.param)


def _types(model):
    """Element type of every tensor of a model (inferred)."""
    graph = onnx.shape_inference.infer_shapes(model, strict_mode=True).graph
    types = {v.name: v.type.tensor_type.elem_type
             for v in (*graph.input, *graph.output, *graph.value_info)}
    types.update({t.name: t.data_type for t in graph.initializer})
    return types


def test_fp16_depth_is_close_to_fp32(graphs):
    fp32, fp16 = graphs
    config = read_onnx_config(fp16)  # the config travels into the fp16 graph too
    assert config == read_onnx_config(fp32)
    full = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"])
    half = ort.InferenceSession(str(fp16), providers=["CPUExecutionProvider"])
    assert [i.name for i in half.get_inputs()] == [i.name for i in full.get_inputs()]
    relative = []
    for feed in probe_feeds(config):
        want = full.run([OUTPUT_NAME], feed)[0]
        got = half.run([OUTPUT_NAME], feed)[0]
        assert got.dtype == np.float32 and got.shape == want.shape
        assert np.isfinite(got).all() and got.min() >= config.min_depth
        assert got.max() <= config.max_depth
        relative.append((np.abs(got - want) / want).ravel())
    relative = np.concatenate(relative)
    assert np.median(relative) < 0.01 and np.percentile(relative, 99) < 0.03


def test_weights_are_fp16_and_sensitive_ops_fp32(graphs):
    fp32, fp16 = graphs
    model = onnx.load(str(fp16))
    summary = precision_summary(model)
    assert summary["fp16_params"] > 0.9 * (summary["fp16_params"] + summary["fp32_params"])
    types = _types(model)
    assert all(types[v.name] == F32 for v in (*model.graph.input, *model.graph.output))
    seen = set()
    for node in model.graph.node:
        floats = [types[i] for i in node.input if i and types[i] in (F32, F16)]
        if node.op_type in FP32_OPS:
            assert set(floats) <= {F32}, node.name
        if node.op_type in ("Conv", "MatMul", "Gemm", "ConvTranspose") and floats \
                and not set(node.input) & set(CAMERA_INPUTS):
            seen.add(floats[0])
    assert F16 in seen  # the heavy ops do run in fp16
    writer = next(n for n in model.graph.node if OUTPUT_NAME in n.output)
    assert writer.op_type == "Clip" and types[writer.input[0]] == F32


def test_camera_arithmetic_stays_fp32(exported):
    _, fp16 = exported("camera-aware-fc")
    model = onnx.load(str(fp16))
    assert [i.name for i in model.graph.input] == ["image", *CAMERA_INPUTS]
    types = _types(model)
    camera = set(CAMERA_INPUTS)
    inits = {t.name for t in model.graph.initializer}
    for node in model.graph.node:  # the nodes computed from the camera and constants alone
        if set(node.input) & camera and set(node.input) <= camera | inits | {""}:
            assert all(types.get(o) != F16 for o in node.output), node.name
            camera.update(node.output)
    assert len(camera) > len(CAMERA_INPUTS) + 5  # focal ratio, scale, log f, FiLM MLP...


def test_conversion_is_cached_by_content(graphs, tmp_path):
    fp32, fp16 = graphs
    again = fp16_graph(fp32, fp16.parent)
    assert again == fp16 and again.stat().st_mtime_ns == fp16.stat().st_mtime_ns
    copy = tmp_path / "model.onnx"
    copy.write_bytes(fp32.read_bytes())
    moved = fp16_graph(copy, tmp_path / "work")
    assert moved.read_bytes() == fp16.read_bytes()  # deterministic: same bytes, same hash


def test_control_flow_is_refused():
    helper = onnx.helper
    branch = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "branch", [],
                               [helper.make_tensor_value_info("y", F32, [1])])
    graph = helper.make_graph(
        [helper.make_node("If", ["c"], ["out"], then_branch=branch, else_branch=branch)], "g",
        [helper.make_tensor_value_info("c", onnx.TensorProto.BOOL, []),
         helper.make_tensor_value_info("x", F32, [1])],
        [helper.make_tensor_value_info("out", F32, [1])])
    with pytest.raises(Fp16ConversionError, match="If"):
        convert_to_fp16(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
