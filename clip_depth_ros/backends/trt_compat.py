"""TensorRT 10 and 11 behind one builder; the ``tensorrt`` module is always passed in.

TensorRT 10 (JetPack 6 ships 10.3) builds weakly typed networks: the exported fp32 graph plus
the builder flags FP16 / INT8 (and an entropy calibrator) let it pick layer precisions.
TensorRT 11 removed those flags and the implicit INT8 calibrators: every network is strongly
typed, a tensor's type in the ONNX graph is its type in the engine.  There the fp16 engine is
built from the reduced-precision graph of :mod:`.onnx_fp16`; int8 would need a Q/DQ-quantised
graph, which this package does not make.  The line follows the installed ``trt.__version__``;
its typing and the hash of the graph actually parsed are part of the engine cache key.
Nothing here imports tensorrt, so both lines are tested against fakes of their API surface.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from ..config import ModelConfig
from ..errors import BackendError
from ..export_onnx import INPUT_NAME, graph_inputs
from .exported import check_graph_io
from .onnx_fp16 import fp16_graph

log = logging.getLogger("clip_depth_ros")

WEAK, STRONG = "weak", "strong"
TRT11_INT8 = ("int8 on TensorRT 11 needs a Q/DQ-quantised graph (NVIDIA ModelOpt): TensorRT 11 "
              "has no implicit INT8 calibration, and this package does not quantise graphs. "
              "Quantise the exported graph with ModelOpt and build it with precision fp32 (a "
              "strongly typed build keeps the graph's own types), or use TensorRT 10 (JetPack "
              "6) for calibrated int8")


class EngineBuildError(BackendError):
    """TensorRT could not parse the graph or build an engine."""


def trt_line(version: str) -> int:
    """The TensorRT API line of a version string: 10 (weak typing + flags) or 11 (strong)."""
    try:
        major = int(str(version).split(".")[0])
    except ValueError:
        raise BackendError(f"unreadable TensorRT version '{version}'") from None
    if major < 10:
        raise BackendError(f"TensorRT {version} is too old: the tensorrt backend needs "
                           "TensorRT 10 (JetPack 6) or 11")
    if major > 11:  # later lines are expected to stay strongly typed; say it was not tried
        log.warning("TensorRT %s is newer than this backend knows; building as for 11", version)
    return min(major, 11)


def network_typing(line: int) -> str:
    """'weak' for TensorRT 10 (precision from builder flags), 'strong' for 11 (from the graph)."""
    return WEAK if line == 10 else STRONG


def check_line_precision(line: int, precision: str) -> None:
    """Refuse what a line cannot build: int8 on TensorRT 11 (no calibrators, no Q/DQ here)."""
    if precision not in ("fp16", "fp32", "int8"):
        raise BackendError(f"precision must be fp16, fp32 or int8, got '{precision}'")
    if line >= 11 and precision == "int8":
        raise BackendError(TRT11_INT8)


def network_graph(onnx_path: Union[str, os.PathLike], precision: str, line: int,
                  work_dir: Union[str, os.PathLike]) -> Path:
    """The ONNX graph the builder parses: the exported fp32 graph on TensorRT 10 (the flags
    choose precision) and for fp32 on 11; its fp16 form (cached in ``work_dir``) for fp16 on
    11."""
    check_line_precision(line, precision)
    if line == 10 or precision == "fp32":
        return Path(onnx_path).expanduser()
    return fp16_graph(onnx_path, work_dir)


def create_network(trt: Any, builder: Any, line: int) -> Any:
    """An explicit-batch network definition, strongly typed on TensorRT 11."""
    if line == 10:
        return builder.create_network(0)  # explicit batch is the only mode from 10 on
    # 11 types every network strongly and keeps this flag (ignored) for compatibility; asking
    # for it states the intent and stays right should a later release read it again.
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    return builder.create_network(0 if flag is None else 1 << int(flag))


def set_weak_precision(trt: Any, builder_config: Any, precision: str,
                       calibrator: Optional[Any]) -> None:
    """TensorRT 10's precision flags: FP16 for fp16, FP16 + INT8 (+ calibrator) for int8."""
    if precision == "fp32":
        return
    for flag in ("FP16", "INT8") if precision == "int8" else ("FP16",):
        if not hasattr(trt.BuilderFlag, flag):
            raise EngineBuildError(f"TensorRT {trt.__version__} has no BuilderFlag.{flag}: a "
                                   "weakly typed build needs TensorRT 10")
    # FP16 is also int8's fallback for layers without int8 kernels.
    builder_config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        if calibrator is None:
            raise EngineBuildError("an int8 build on TensorRT 10 needs a calibrator")
        builder_config.set_flag(trt.BuilderFlag.INT8)
        builder_config.int8_calibrator = calibrator


def parse_onnx(trt: Any, network: Any, logger: Any, graph_path: Path) -> Any:
    """Parse the graph into the network; the parser must outlive the build."""
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(graph_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineBuildError(f"TensorRT could not parse {graph_path}: {errors}")
    return parser


def build_serialized_engine(trt: Any, logger: Any, graph_path: Union[str, os.PathLike],
                            precision: str, calibrator: Optional[Any] = None,
                            timing_cache_path: Optional[Union[str, os.PathLike]] = None,
                            workspace_gb: float = 4.0) -> bytes:
    """Parse :func:`network_graph`'s graph and build a serialised engine for the installed
    line: flags on 10, the graph's own types on 11."""
    line = trt_line(trt.__version__)
    check_line_precision(line, precision)
    graph_path = Path(graph_path)
    builder = trt.Builder(logger)
    network = create_network(trt, builder, line)
    parser = parse_onnx(trt, network, logger, graph_path)  # noqa: F841 (kept alive)
    builder_config = builder.create_builder_config()
    builder_config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * 2**30))
    if line == 10:
        set_weak_precision(trt, builder_config, precision, calibrator)
    timing = Path(timing_cache_path).expanduser() if timing_cache_path else None
    cache = builder_config.create_timing_cache(timing.read_bytes() if timing and timing.is_file()
                                               else b"")
    builder_config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, builder_config)
    if serialized is None:
        raise EngineBuildError(f"TensorRT failed to build an engine for {graph_path} "
                               f"({precision}); see the TensorRT log above")
    if timing is not None:
        timing.parent.mkdir(parents=True, exist_ok=True)
        timing.write_bytes(bytes(builder_config.get_timing_cache().serialize()))
    return bytes(serialized)


def engine_io(trt: Any, engine: Any) -> tuple[list[str], list[str]]:
    """(input names, output names) of an engine, in its own order."""
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
    return inputs, [n for n in names if n not in inputs]


def check_engine_io(trt: Any, engine: Any, config: ModelConfig, source: Union[str, Path]) -> None:
    """The engine's I/O must be the exporter's contract: ``graph_inputs(config)`` (image
    [1, 3, h, w], plus f_px / image_width for camera-aware models) -> depth."""
    inputs, outputs = engine_io(trt, engine)
    expected: Sequence[str] = graph_inputs(config)
    # TensorRT need not keep the ONNX input order; compare in the exporter's order.
    ordered = sorted(inputs, key=lambda n: (n not in expected,
                                            expected.index(n) if n in expected else 0, n))
    shape = list(engine.get_tensor_shape(INPUT_NAME)) if INPUT_NAME in inputs else []
    check_graph_io(source, config, ordered, shape, outputs)
