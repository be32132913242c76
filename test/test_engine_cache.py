"""TensorRT engine cache, without TensorRT: keys, files, and when an engine is (not) loaded."""
import hashlib
import importlib.util
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from clip_depth_ros.backends.engine_cache import (Platform, cache_paths, engine_cache_key,
                                                  engine_key_fields, load_or_build)

ROOT = Path(__file__).resolve().parents[1]
SHAPE = (1, 3, 192, 256)


class FakeToolchain:
    """Stands in for TensorRT: 'engines' are bytes naming what they were built by and for."""

    def __init__(self, trt_version="10.3.0", gpu_name="NVIDIA Fake 4090", cc="8.9",
                 typing="weak", network_onnx=None):
        self.plat = Platform(trt_version, gpu_name, cc, typing)
        self.network_onnx = network_onnx  # a strongly typed build parses another graph
        self.builds, self.deserialized = [], []

    def platform(self):
        return self.plat

    def network_graph(self, onnx_path, precision):
        return Path(self.network_onnx or onnx_path)

    def build(self, onnx_path, precision):
        self.builds.append((Path(onnx_path), precision))
        digest = hashlib.sha256(Path(onnx_path).read_bytes()).hexdigest()[:8]
        plat = self.plat
        fields = ("ENGINE", plat.trt_version, precision, digest, plat.gpu_name,
                  plat.compute_capability)
        return "|".join(fields).encode()

    def deserialize(self, data):
        self.deserialized.append(data)
        parts = data.decode(errors="replace").split("|")
        if parts[0] != "ENGINE" or parts[1] != self.plat.trt_version:
            raise RuntimeError("engine built by another TensorRT")
        if parts[4:] != [self.plat.gpu_name, self.plat.compute_capability]:
            raise RuntimeError("engine built for another GPU")
        return {"engine": data}


@pytest.fixture
def onnx_file(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"fake onnx graph bytes v1")
    return path


def _key(onnx_path, input_shape=SHAPE, precision="fp16", network_onnx=None,
         calibration_sha256=None, **platform):
    fields = dict(trt_version="10.3.0", gpu_name="NVIDIA Fake 4090", compute_capability="8.9",
                  network_typing="weak")
    fields.update(platform)
    return engine_cache_key(onnx_path, input_shape, precision, Platform(**fields), network_onnx,
                            calibration_sha256)


def test_key_changes_with_every_field(onnx_file, tmp_path):
    other = tmp_path / "other.onnx"
    other.write_bytes(b"fake onnx graph bytes v2")
    keys = [_key(onnx_file), _key(other), _key(onnx_file, input_shape=(1, 3, 224, 224)),
            _key(onnx_file, precision="fp32"),
            _key(onnx_file, precision="int8", calibration_sha256="a" * 64),
            _key(onnx_file, precision="int8", calibration_sha256="b" * 64),
            _key(onnx_file, trt_version="10.4.0"), _key(onnx_file, gpu_name="NVIDIA Orin"),
            _key(onnx_file, compute_capability="8.7"),
            _key(onnx_file, trt_version="11.4.0", network_typing="strong"),
            _key(onnx_file, network_typing="strong"), _key(onnx_file, network_onnx=other)]
    assert len(set(keys)) == len(keys)
    assert all(len(k) == 64 and int(k, 16) >= 0 for k in keys)  # sha256 hex


def test_key_depends_on_content_not_path(onnx_file, tmp_path):
    copy = tmp_path / "sub" / "renamed.onnx"
    copy.parent.mkdir()
    copy.write_bytes(onnx_file.read_bytes())
    assert _key(copy) == _key(onnx_file)
    assert _key(onnx_file) == _key(onnx_file)


def test_fields_record_everything(onnx_file, tmp_path):
    weak = Platform("10.3.0", "GPU", "8.9", "weak")
    fields = engine_key_fields(onnx_file, SHAPE, "fp16", weak)
    source = hashlib.sha256(onnx_file.read_bytes()).hexdigest()
    assert fields["onnx_sha256"] == fields["network_onnx_sha256"] == source
    assert fields["input_shape"] == list(SHAPE) and fields["precision"] == "fp16"
    assert (fields["trt_version"], fields["network_typing"], fields["gpu_name"],
            fields["compute_capability"]) == ("10.3.0", "weak", "GPU", "8.9")
    # a strongly typed build records the graph it parsed (the fp16 form) besides the export
    reduced = tmp_path / "model.fp16.onnx"
    reduced.write_bytes(b"fp16 graph bytes")
    strong = engine_key_fields(onnx_file, SHAPE, "fp16", Platform("11.4.0", "GPU", "8.9",
                                                                  "strong"), reduced)
    assert strong["onnx_sha256"] == source and strong["network_typing"] == "strong"
    assert strong["network_onnx_sha256"] == hashlib.sha256(b"fp16 graph bytes").hexdigest()
    with pytest.raises(ValueError, match="precision"):
        engine_key_fields(onnx_file, SHAPE, "bf16", weak)
    with pytest.raises(ValueError, match="typing"):
        engine_key_fields(onnx_file, SHAPE, "fp16", Platform("10.3.0", "GPU", "8.9", "mixed"))


def test_builds_once_then_loads_from_cache(onnx_file, tmp_path, caplog):
    cache, fake = tmp_path / "cache", FakeToolchain()
    with caplog.at_level(logging.WARNING, logger="clip_depth_ros"):
        first = load_or_build(onnx_file, "fp16", cache, input_shape=SHAPE, toolchain=fake)
    assert first.built and len(fake.builds) == 1
    assert "can take minutes" in caplog.text
    engine_path, meta_path = cache_paths(cache, first.key)
    assert first.path == engine_path and engine_path.is_file() and meta_path.is_file()
    meta = json.loads(meta_path.read_text())
    assert meta["key"] == first.key == _key(onnx_file)
    assert meta["fields"]["trt_version"] == "10.3.0" and meta["fields"]["precision"] == "fp16"
    second = load_or_build(onnx_file, "fp16", cache, input_shape=SHAPE, toolchain=fake)
    assert not second.built and len(fake.builds) == 1
    assert second.engine == first.engine
    assert not list(cache.glob("*.tmp"))


def test_other_platform_never_loads_the_cached_engine(onnx_file, tmp_path):
    cache = tmp_path / "cache"
    old = load_or_build(onnx_file, "fp16", cache, input_shape=SHAPE, toolchain=FakeToolchain())
    for other in (FakeToolchain(trt_version="10.4.0"), FakeToolchain(gpu_name="NVIDIA Orin"),
                  FakeToolchain(cc="8.7")):
        new = load_or_build(onnx_file, "fp16", cache, input_shape=SHAPE, toolchain=other)
        assert new.built and new.key != old.key and len(other.builds) == 1
        assert old.path.read_bytes() not in other.deserialized
    changed = load_or_build(onnx_file, "fp32", cache, input_shape=SHAPE, toolchain=FakeToolchain())
    assert changed.built and changed.key != old.key


def test_mismatching_stored_key_is_not_loaded(onnx_file, tmp_path):
    cache, fake = tmp_path / "cache", FakeToolchain()
    first = load_or_build(onnx_file, "fp16", cache, input_shape=SHAPE, toolchain=fake)
    engine_path, meta_path = cache_paths(cache, first.key)
    # an engine from another TensorRT, filed under this key (copied cache, bad tooling...)
    foreign = b"ENGINE|9.9.9|fp16|deadbeef|NVIDIA Fake 4090|8.9"
    engine_path.write_bytes(foreign)
    meta = json.loads(meta_path.read_text())
    meta["fields"]["trt_version"] = "9.9.9"
    meta["engine_sha256"] = hashlib.sha256(foreign).hexdigest()
    meta_path.write_text(json.dumps(meta))
    fake.deserialized.clear()
    again = load_or_build(onnx_file, "fp16", cache, input_shape=SHAPE, toolchain=fake)
    assert again.built and len(fake.builds) == 2
    assert foreign not in fake.deserialized  # never even handed to TensorRT
    assert json.loads(meta_path.read_text())["fields"]["trt_version"] == "10.3.0"
    assert engine_path.read_bytes() != foreign


def test_corrupt_engine_file_triggers_rebuild(onnx_file, tmp_path):
    cache, fake = tmp_path / "cache", FakeToolchain()
    first = load_or_build(onnx_file, "fp16", cache, input_shape=SHAPE, toolchain=fake)
    good = first.path.read_bytes()
    first.path.write_bytes(good[: len(good) // 2])  # truncated
    fake.deserialized.clear()
    again = load_or_build(onnx_file, "fp16", cache, input_shape=SHAPE, toolchain=fake)
    assert again.built and len(fake.builds) == 2
    assert good[: len(good) // 2] not in fake.deserialized
    assert first.path.read_bytes() == good


def test_deserialisation_failure_triggers_rebuild(onnx_file, tmp_path):
    cache, fake = tmp_path / "cache", FakeToolchain()
    first = load_or_build(onnx_file, "fp16", cache, input_shape=SHAPE, toolchain=fake)
    _, meta_path = cache_paths(cache, first.key)
    # intact bytes that TensorRT refuses
    stale = b"ENGINE|10.0.0|fp16|cafebabe|NVIDIA Fake 4090|8.9"
    first.path.write_bytes(stale)
    meta = json.loads(meta_path.read_text())
    meta["engine_sha256"] = hashlib.sha256(stale).hexdigest()
    meta_path.write_text(json.dumps(meta))
    again = load_or_build(onnx_file, "fp16", cache, input_shape=SHAPE, toolchain=fake)
    assert stale in fake.deserialized and again.built and len(fake.builds) == 2
    assert first.path.read_bytes() != stale


@pytest.mark.parametrize("damage", ["garbled-json", "no-json", "json-list"])
def test_damaged_record_triggers_rebuild(onnx_file, tmp_path, damage):
    cache, fake = tmp_path / "cache", FakeToolchain()
    first = load_or_build(onnx_file, "fp16", cache, input_shape=SHAPE, toolchain=fake)
    _, meta_path = cache_paths(cache, first.key)
    if damage == "garbled-json":
        meta_path.write_text("{not json")
    elif damage == "no-json":
        meta_path.unlink()
    else:
        meta_path.write_text("[]")
    again = load_or_build(onnx_file, "fp16", cache, input_shape=SHAPE, toolchain=fake)
    assert again.built and len(fake.builds) == 2 and meta_path.is_file()


def test_a_changed_onnx_file_rebuilds(onnx_file, tmp_path):
    cache, fake = tmp_path / "cache", FakeToolchain()
    first = load_or_build(onnx_file, "fp16", cache, input_shape=SHAPE, toolchain=fake)
    onnx_file.write_bytes(b"re-exported graph")
    again = load_or_build(onnx_file, "fp16", cache, input_shape=SHAPE, toolchain=fake)
    assert again.built and again.key != first.key


def test_toolchain_and_input_shape_are_required(onnx_file, tmp_path):
    """No hidden default reaches for TensorRT or the exporter from inside the cache."""
    with pytest.raises(TypeError, match="toolchain"):
        load_or_build(onnx_file, "fp16", tmp_path / "cache", input_shape=SHAPE)
    with pytest.raises(TypeError, match="input_shape"):
        load_or_build(onnx_file, "fp16", tmp_path / "cache", toolchain=FakeToolchain())


def test_strongly_typed_engines_are_keyed_by_the_graph_built(onnx_file, tmp_path):
    """TensorRT 11 parses a reduced-precision graph: its bytes are part of the key, and the
    builder is handed that graph, not the export."""
    reduced = tmp_path / "model.fp16.onnx"
    reduced.write_bytes(b"fp16 graph v1")
    cache = tmp_path / "cache"
    weak = load_or_build(onnx_file, "fp16", cache, input_shape=SHAPE, toolchain=FakeToolchain())
    strong_chain = FakeToolchain("10.3.0", typing="strong", network_onnx=reduced)
    strong = load_or_build(onnx_file, "fp16", cache, input_shape=SHAPE, toolchain=strong_chain)
    assert strong.built and strong.key != weak.key
    assert strong_chain.builds == [(reduced, "fp16")]
    meta = json.loads(cache_paths(cache, strong.key)[1].read_text())
    assert meta["network_onnx"] == str(reduced) and meta["fields"]["network_typing"] == "strong"
    assert not load_or_build(onnx_file, "fp16", cache, input_shape=SHAPE,
                             toolchain=strong_chain).built
    reduced.write_bytes(b"fp16 graph v2")  # another converter version, same export
    again = load_or_build(onnx_file, "fp16", cache, input_shape=SHAPE, toolchain=strong_chain)
    assert again.built and again.key not in (strong.key, weak.key)


def test_cache_logic_imports_no_tensorrt():
    script = ("import sys\nsys.path.insert(0, %r)\n"
              "import clip_depth_ros.backends.engine_cache as ec\n"
              "ec.engine_cache_key(sys.executable, (1, 3, 8, 8), 'fp16', "
              "ec.Platform('10.0', 'gpu', '8.9', 'weak'))\n"
              "print('LOADED:' + ','.join(sorted(m for m in sys.modules "
              "if m.split('.')[0] in ('tensorrt', 'torch', 'onnxruntime', 'onnx') "
              "or m == 'clip_depth_ros.export_onnx')))\n") % str(ROOT)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "LOADED:"


def test_tensorrt_backend_without_tensorrt_says_what_to_install(tmp_path):
    from clip_depth_ros.backends import create_backend
    missing = str(tmp_path / "model.onnx")
    if importlib.util.find_spec("tensorrt") is not None:
        # installed: the backend gets past the import and refuses the missing GPU or file
        with pytest.raises((RuntimeError, FileNotFoundError)) as info:
            create_backend("tensorrt", onnx_path=missing)
        assert "install tensorrt" not in str(info.value)
        return
    with pytest.raises(ImportError, match="install tensorrt") as info:
        create_backend("tensorrt", onnx_path=missing)
    assert "JetPack" in str(info.value) and "pypi.nvidia.com" in str(info.value)


def test_int8_engines_are_keyed_by_their_calibration_set(onnx_file, tmp_path):
    """Changing, adding or renaming a calibration image gives another INT8 engine; fp16 engines
    do not depend on calibration at all."""
    from clip_depth_ros.backends.engine_cache import calibration_set_sha256

    images = tmp_path / "calib"
    images.mkdir()
    (images / "a.png").write_bytes(b"png a")
    (images / "b.jpg").write_bytes(b"jpg b")
    (images / "notes.txt").write_text("not an image")
    first = calibration_set_sha256(images)
    (images / "notes.txt").write_text("still not an image")
    assert calibration_set_sha256(images) == first
    (images / "b.jpg").write_bytes(b"jpg b, retaken")
    second = calibration_set_sha256(images)
    (images / "b.jpg").rename(images / "c.jpg")
    third = calibration_set_sha256(images)
    assert len({first, second, third}) == 3
    toolchain = FakeToolchain()
    one = load_or_build(onnx_file, "int8", tmp_path / "cache", input_shape=SHAPE,
                        toolchain=toolchain, calibration_sha256=first)
    again = load_or_build(onnx_file, "int8", tmp_path / "cache", input_shape=SHAPE,
                          toolchain=toolchain, calibration_sha256=first)
    other = load_or_build(onnx_file, "int8", tmp_path / "cache", input_shape=SHAPE,
                          toolchain=toolchain, calibration_sha256=third)
    assert (one.built, again.built, other.built) == (True, False, True)
    assert one.key == again.key != other.key
    with pytest.raises(ValueError, match="calibration"):
        _key(onnx_file, precision="int8")
    assert _key(onnx_file, calibration_sha256="x") == _key(onnx_file)  # fp16
