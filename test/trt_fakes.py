"""Fakes of the TensorRT 10 and 11 Python API surfaces this package uses (no GPU, no TensorRT).

``fake_tensorrt("10.3.0")`` has the weak-typing builder flags FP16 / INT8 and
``IInt8EntropyCalibrator2``; ``fake_tensorrt("11.4.0")`` has neither (as the
tensorrt-cu13-bindings 11.4.0.106 wheel) but NetworkDefinitionCreationFlag.STRONGLY_TYPED.
The builder records what it was asked for; a "serialised engine" is JSON naming it.  The
engine runs the parsed ONNX graph in onnxruntime, reading and writing its I/O through the
raw addresses bound with ``set_tensor_address`` -- host memory here instead of the GPU's.
"""
from __future__ import annotations

import ctypes
import enum
import json
import types
from pathlib import Path

import numpy as np

ENGINE_MAGIC = b"FAKE-TRT-ENGINE\n"


class DataType(enum.Enum):
    """trt.float32 / trt.float16 stand-ins."""
    FLOAT = "float32"
    HALF = "float16"


class TensorIOMode(enum.Enum):
    """trt.TensorIOMode."""
    INPUT = 1
    OUTPUT = 2


class Logger:
    """trt.Logger(severity)."""
    WARNING = 2

    def __init__(self, severity=WARNING):
        self.severity = severity


def _flag_enum(name, members):
    return enum.IntEnum(name, {m: i for i, m in enumerate(members)})


class FakeBuilderConfig:
    """Records flags, calibrator, workspace and timing cache."""

    def __init__(self, module):
        self.module, self.flags, self.int8_calibrator, self.pools = module, [], None, {}

    def set_flag(self, flag):
        self.flags.append(flag.name)

    def set_memory_pool_limit(self, pool, size):
        self.pools[pool.name] = size

    def create_timing_cache(self, data):
        return types.SimpleNamespace(data=bytes(data), serialize=lambda: b"timing")

    def set_timing_cache(self, cache, ignore_mismatch):
        self.timing_cache = cache

    def get_timing_cache(self):
        return self.timing_cache


class FakeNetwork:
    def __init__(self, flags):
        self.flags, self.parsed = flags, None


class FakeParser:
    """trt.OnnxParser: parse_from_file notes the file; ``fail`` makes it report an error."""
    fail = False

    def __init__(self, network, logger):
        self.network, self.num_errors = network, 0

    def parse_from_file(self, path):
        if self.fail or not Path(path).is_file():
            self.num_errors = 1
            return False
        self.network.parsed = str(path)
        return True

    def get_error(self, i):
        return "fake parser error"


class FakeBuilder:
    def __init__(self, module, logger):
        self.module = module

    def create_network(self, flags):
        self.module.calls.append(("create_network", flags))
        return FakeNetwork(flags)

    def create_builder_config(self):
        return FakeBuilderConfig(self.module)

    def build_serialized_network(self, network, config):
        """The 'engine': which TensorRT built what, and how."""
        import onnx
        graph = onnx.load(network.parsed)
        record = {"trt_version": self.module.__version__, "graph": network.parsed,
                  "network_flags": network.flags, "builder_flags": config.flags,
                  "calibrator": config.int8_calibrator is not None,
                  "fp16_initializers": sum(t.data_type == onnx.TensorProto.FLOAT16
                                           for t in graph.graph.initializer)}
        self.module.builds.append(record)
        return ENGINE_MAGIC + json.dumps(record).encode()


def _io_specs(graph_path):
    """[(name, mode, shape, dtype)] of an ONNX graph's I/O."""
    import onnx
    graph = onnx.load(graph_path).graph
    kinds = {onnx.TensorProto.FLOAT: DataType.FLOAT, onnx.TensorProto.FLOAT16: DataType.HALF}

    def spec(value, mode):
        tensor = value.type.tensor_type
        return (value.name, mode, tuple(d.dim_value for d in tensor.shape.dim),
                kinds[tensor.elem_type])

    return ([spec(v, TensorIOMode.INPUT) for v in graph.input]
            + [spec(v, TensorIOMode.OUTPUT) for v in graph.output])


def _view(address, shape, dtype):
    """A numpy view of host memory at a raw address (what a device pointer is to TensorRT)."""
    np_type = np.dtype(dtype.value)
    count = int(np.prod(shape)) if shape else 1
    raw = (ctypes.c_byte * (count * np_type.itemsize)).from_address(address)
    return np.frombuffer(raw, dtype=np_type).reshape(shape)


class FakeContext:
    """Runs the engine's graph in onnxruntime on the tensors bound by address."""

    def __init__(self, engine):
        self.engine, self.addresses, self.runs = engine, {}, 0

    def set_tensor_address(self, name, address):
        self.addresses[name] = int(address)

    def execute_async_v3(self, stream):
        import onnxruntime as ort
        if self.engine.session is None:
            self.engine.session = ort.InferenceSession(self.engine.graph,
                                                       providers=["CPUExecutionProvider"])
        specs = {s[0]: s for s in self.engine.specs}
        feed = {n: _view(self.addresses[n], s[2], s[3]).copy()
                for n, s in specs.items() if s[1] is TensorIOMode.INPUT}
        names = [n for n, s in specs.items() if s[1] is TensorIOMode.OUTPUT]
        for name, value in zip(names, self.engine.session.run(names, feed)):
            _view(self.addresses[name], specs[name][2], specs[name][3])[...] = value
        self.runs += 1
        return True


class FakeEngine:
    """ICudaEngine's name-based I/O surface over a parsed ONNX graph."""

    def __init__(self, record, specs=None):
        self.record, self.graph, self.session = record, record["graph"], None
        self.specs = specs if specs is not None else _io_specs(self.graph)

    @property
    def num_io_tensors(self):
        return len(self.specs)

    def get_tensor_name(self, i):
        return self.specs[i][0]

    def _spec(self, name):
        return next(s for s in self.specs if s[0] == name)

    def get_tensor_mode(self, name):
        return self._spec(name)[1]

    def get_tensor_shape(self, name):
        return self._spec(name)[2]

    def get_tensor_dtype(self, name):
        return self._spec(name)[3]

    def create_execution_context(self):
        self.context = FakeContext(self)
        return self.context


class FakeRuntime:
    """Deserialises only engines its own TensorRT version built (None otherwise, as TRT)."""

    def __init__(self, module, logger):
        self.module = module

    def deserialize_cuda_engine(self, data):
        data = bytes(data)
        if not data.startswith(ENGINE_MAGIC):
            return None
        record = json.loads(data[len(ENGINE_MAGIC):])
        if record["trt_version"] != self.module.__version__:
            return None
        return FakeEngine(record)


class FakeCalibratorBase:
    """trt.IInt8EntropyCalibrator2 (TensorRT 10 only)."""

    def __init__(self):
        self.base_initialised = True


def fake_tensorrt(version: str) -> types.ModuleType:
    """A fake ``tensorrt`` module: the TensorRT 10 surface for 10.x, 11's for 11.x."""
    module = types.ModuleType("tensorrt")
    module.__version__ = version
    module.calls, module.builds = [], []
    module.Logger, module.TensorIOMode = Logger, TensorIOMode
    module.float32, module.float16 = DataType.FLOAT, DataType.HALF
    module.MemoryPoolType = _flag_enum("MemoryPoolType", ["WORKSPACE"])
    module.Builder = lambda logger: FakeBuilder(module, logger)
    module.Runtime = lambda logger: FakeRuntime(module, logger)
    module.OnnxParser = FakeParser
    if version.startswith("10."):
        module.BuilderFlag = _flag_enum("BuilderFlag", ["FP16", "INT8", "DEBUG", "GPU_FALLBACK",
                                                        "REFIT", "TF32", "BF16"])
        module.NetworkDefinitionCreationFlag = _flag_enum(
            "NetworkDefinitionCreationFlag", ["EXPLICIT_BATCH", "STRONGLY_TYPED"])
        module.IInt8EntropyCalibrator2 = FakeCalibratorBase
    else:  # as in tensorrt-cu13-bindings 11.4.0.106: no FP16 / BF16 / INT8, no calibrators
        module.BuilderFlag = _flag_enum("BuilderFlag", ["DEBUG", "GPU_FALLBACK", "TF32",
                                                        "SPARSE_WEIGHTS", "DIRECT_IO"])
        module.NetworkDefinitionCreationFlag = _flag_enum(
            "NetworkDefinitionCreationFlag",
            ["STRONGLY_TYPED", "PREFER_AOT_PYTHON_PLUGINS", "PREFER_JIT_PYTHON_PLUGINS"])
    return module
