"""Weight files: safetensors + sidecar round trips, strict checks, safe loading, atomic writes."""
import copy
import json
import os
import pathlib
import stat

import pytest
import safetensors.torch
import torch
from safetensors.torch import save_file

from clip_depth_ros.config import ConfigError, ModelConfig
from clip_depth_ros.model import create_model, load_weights, save_weights, trained_state
from clip_depth_ros.model.factory import _open_clip
from clip_depth_ros.weights import WeightsError, load_tensor_file, read_sidecar, sidecar_path


class Payload:
    """A pickled object whose unpickling would create a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def _image(config, n=1, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, *config.input_hw, generator=gen)


def _build(name="tiny-mirror", seed=0, **kwargs):
    torch.manual_seed(seed)
    return create_model(name, **kwargs)


def _perturb(module, seed=7):
    """Give every float tensor of ``module`` new values (so a load must really restore them)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in module.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(0.05 * torch.randn(tensor.shape, generator=gen))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny-mirror with a 'trained' head, saved head-only and with the image encoder."""
    model = _build(seed=0)
    _perturb(model.head)
    folder = tmp_path_factory.mktemp("weights")
    head_path = save_weights(model, folder / "head.safetensors", metadata={"epoch": 3})
    full_path = save_weights(model, folder / "full.safetensors",
                             parts=("image_encoder", "head"))
    return {"model": model, "head": head_path, "full": full_path, "folder": folder}


@pytest.fixture(scope="module")
def scratch():
    """A model to load bad files into (must stay unchanged by a failed load)."""
    return _build(seed=3)


def _out(model, seed=1):
    with torch.no_grad():
        return model(_image(model.config, seed=seed))


def test_head_round_trip_identical_outputs(trained):
    model = trained["model"]
    loaded = _build(seed=0, weights=str(trained["head"]))  # same random backbone, saved head
    fresh = _build(seed=0)
    assert torch.equal(_out(loaded), _out(model))
    assert not torch.allclose(_out(fresh), _out(model))  # the load did the work
    for key, value in trained_state(model, ["head"]).items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_image_encoder_and_head_round_trip(trained):
    model = trained["model"]
    loaded = _build(seed=5, weights=str(trained["full"]))  # another random backbone, overwritten
    assert torch.equal(_out(loaded), _out(model))
    assert not torch.allclose(_out(_build(seed=5)), _out(model))


def test_sidecar_holds_config_parts_metadata(trained):
    side = json.loads(sidecar_path(trained["head"]).read_text())
    assert side["config"] == trained["model"].config.to_dict()
    assert side["parts"] == ["head"]
    assert side["metadata"] == {"epoch": 3}
    full = json.loads(sidecar_path(trained["full"]).read_text())
    assert full["parts"] == ["image_encoder", "head"]
    stored = load_tensor_file(trained["head"])
    assert set(stored) == set(trained_state(trained["model"], ["head"]))
    assert all(k.startswith("head.") for k in stored)


def test_config_also_in_safetensors_header(trained, tmp_path):
    """One file is enough: without the JSON sidecar the header supplies the config."""
    lone = tmp_path / "lone.safetensors"
    lone.write_bytes(trained["head"].read_bytes())
    side = read_sidecar(lone)
    assert side["config"] == trained["model"].config.to_dict()
    assert side["parts"] == ["head"]


def test_recorded_config_used_when_model_name_empty(trained, tmp_path):
    # record a distinctive config: the same architecture with another depth range
    data = json.loads(sidecar_path(trained["head"]).read_text())
    data["config"]["max_depth"] = 7.5
    data["config"]["name"] = "robot-mirror"
    path = tmp_path / "robot.safetensors"
    path.write_bytes(trained["head"].read_bytes())
    sidecar_path(path).write_text(json.dumps(data))
    torch.manual_seed(0)
    model = create_model(None, weights=str(path))
    assert model.config.name == "robot-mirror" and model.config.max_depth == 7.5
    assert model.config.method == "mirror"
    assert _out(model).max() <= 7.5


def test_no_model_and_no_weights_raises():
    with pytest.raises(ConfigError, match="no model"):
        create_model(None)


def test_mismatched_model_name_raises_naming_both(trained):
    with pytest.raises(WeightsError) as info:
        create_model("tiny-depthclip", weights=str(trained["head"]))
    msg = str(info.value)
    assert "tiny-mirror" in msg and "tiny-depthclip" in msg and str(trained["head"]) in msg


def _write_bad(folder, name, tensors, like):
    path = folder / f"{name}.safetensors"
    save_file(tensors, str(path))
    sidecar_path(path).write_text(sidecar_path(like).read_text())
    return path


def _bad_state(trained, kind):
    state = {k: v.clone() for k, v in load_tensor_file(trained["head"]).items()}
    if kind == "missing":
        del state["head.out.weight"]
        return state, "head.out.weight"
    if kind == "extra":
        state["head.bogus.weight"] = torch.zeros(3)
        return state, "head.bogus.weight"
    if kind == "shape":
        state["head.out.weight"] = torch.zeros(1, 5, 3, 3)
        return state, "head.out.weight"
    if kind == "int":
        state["head.out.weight"] = state["head.out.weight"].to(torch.int32)
        return state, "head.out.weight"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind,problem", [("missing", "missing"), ("extra", "unexpected"),
                                          ("shape", "shape"), ("int", "dtype")])
def test_bad_tensor_file_rejected(trained, scratch, tmp_path, kind, problem):
    state, key = _bad_state(trained, kind)
    path = _write_bad(tmp_path, kind, state, trained["head"])
    before = copy.deepcopy(scratch.state_dict())
    with pytest.raises(WeightsError) as info:
        load_weights(scratch, path)
    msg = str(info.value)
    assert key in msg and problem in msg and str(path) in msg
    after = scratch.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # nothing half-loaded


def test_bad_tensor_file_rejected_by_create_model(trained, tmp_path):
    state, key = _bad_state(trained, "shape")
    path = _write_bad(tmp_path, "shape", state, trained["head"])
    with pytest.raises(WeightsError, match="head.out.weight"):
        create_model("tiny-mirror", weights=str(path))


def test_truncated_safetensors_rejected(trained, scratch, tmp_path):
    data = trained["head"].read_bytes()
    path = tmp_path / "truncated.safetensors"
    path.write_bytes(data[: len(data) // 2])
    sidecar_path(path).write_text(sidecar_path(trained["head"]).read_text())
    with pytest.raises(WeightsError, match="truncated.safetensors"):
        load_weights(scratch, path)
    sidecar_path(path).unlink()  # now the header is the only place to look for the config
    with pytest.raises(WeightsError, match="truncated.safetensors"):
        create_model(None, weights=str(path))


def test_random_bytes_rejected(trained, scratch, tmp_path):
    path = tmp_path / "noise.safetensors"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(WeightsError, match="noise.safetensors"):
        create_model(None, weights=str(path))
    sidecar_path(path).write_text(sidecar_path(trained["head"]).read_text())
    with pytest.raises(WeightsError, match="noise.safetensors"):
        load_weights(scratch, path)


def test_missing_file_rejected(tmp_path):
    path = tmp_path / "absent.safetensors"
    with pytest.raises(WeightsError, match="not found"):
        create_model("tiny-mirror", weights=str(path))
    with pytest.raises(WeightsError, match="absent.safetensors"):
        load_tensor_file(path)


def test_unsupported_suffix_rejected(tmp_path):
    path = tmp_path / "weights.npz"
    path.write_bytes(b"\0" * 16)
    with pytest.raises(WeightsError, match="unsupported"):
        load_tensor_file(path)


def _reference_clip(image_size):
    torch.manual_seed(11)
    return _open_clip().create_model("cdr-tiny-vit", pretrained=None,
                                     force_image_size=image_size)


def test_backbone_weights_safetensors(tmp_path):
    clip = _reference_clip((192, 256))  # the model's own input size: every tensor fits as is
    state = {k: v.contiguous() for k, v in clip.state_dict().items()}
    path = tmp_path / "clip.safetensors"
    save_file(state, str(path))
    model = _build("tiny-mirror", seed=0, backbone_weights=str(path))
    visual = model.image_encoder.visual.state_dict()
    written = {k[len("visual."):]: v for k, v in state.items() if k.startswith("visual.")}
    assert set(visual) == set(written)
    for key, value in written.items():
        assert torch.equal(visual[key], value), key


def test_backbone_weights_pt_from_224px_checkpoint(tmp_path):
    clip = _reference_clip(None)  # trained at 224 x 224: positional embedding is resized
    state = clip.state_dict()
    path = tmp_path / "clip.pt"
    torch.save(state, path)
    model = _build("tiny-mirror", seed=0, backbone_weights=str(path))
    visual = model.image_encoder.visual.state_dict()
    written = {k[len("visual."):]: v for k, v in state.items() if k.startswith("visual.")}
    for key, value in written.items():
        if key == "positional_embedding":
            continue
        assert torch.equal(visual[key], value), key
    pos = visual["positional_embedding"]
    assert pos.shape == (1 + (192 // 16) * (256 // 16), written["positional_embedding"].shape[1])
    # the class-token row is carried over unchanged
    assert torch.equal(pos[0], written["positional_embedding"][0])


def test_pickled_code_refused_and_never_run(tmp_path):
    marker = tmp_path / "payload-ran"
    path = tmp_path / "evil.pt"
    torch.save({"x": Payload(str(marker))}, path)
    with pytest.raises(WeightsError) as info:
        load_tensor_file(path)
    assert "evil.pt" in str(info.value) and "weights_only" in str(info.value)
    with pytest.raises(WeightsError, match="evil.pt"):
        create_model("tiny-mirror", backbone_weights=str(path))
    assert not marker.exists()
    # control: the payload is live -- an unsafe load would have run it
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_non_state_dict_pt_rejected(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(WeightsError, match="state dict"):
        load_tensor_file(path)


def test_module_prefixed_training_checkpoint_loads(tmp_path):
    state = {"a.weight": torch.randn(3, 2), "b.bias": torch.randn(4)}
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 12}, path)
    loaded = load_tensor_file(path)
    assert set(loaded) == set(state)
    assert all(torch.equal(loaded[k], state[k]) for k in state)


def test_module_prefixed_backbone_checkpoint_through_create_model(tmp_path):
    clip = _reference_clip((192, 256))
    state = clip.state_dict()
    path = tmp_path / "ddp.ckpt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    model = _build("tiny-depthclip", seed=0, backbone_weights=str(path))
    weight = model.image_encoder.visual.conv1.weight
    assert torch.equal(weight, state["visual.conv1.weight"])


def test_interrupted_write_keeps_previous_file(trained, tmp_path, monkeypatch):
    model = trained["model"]
    path = tmp_path / "head.safetensors"
    save_weights(model, path)
    old_bytes, old_side = path.read_bytes(), sidecar_path(path).read_text()

    def crash(tensors, filename, metadata=None):
        with open(filename, "wb") as handle:
            handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", crash)
    changed = copy.deepcopy(model)
    _perturb(changed.head, seed=99)
    with pytest.raises(OSError, match="disk full"):
        save_weights(changed, path, metadata={"epoch": 4})
    monkeypatch.undo()
    assert path.read_bytes() == old_bytes
    assert sidecar_path(path).read_text() == old_side
    assert sorted(p.name for p in tmp_path.iterdir()) == ["head.json", "head.safetensors"]
    target = copy.deepcopy(changed)
    load_weights(target, path)
    assert torch.equal(_out(target), _out(model))


def test_saved_files_are_readable_by_other_users(trained, tmp_path):
    # mkstemp creates 0600 files; a node running as another user must still read weights
    old = os.umask(0o022)
    try:
        path = save_weights(trained["model"], tmp_path / "shared.safetensors")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert stat.S_IMODE(sidecar_path(path).stat().st_mode) == 0o644


def test_recorded_config_wins_over_a_same_architecture_name(trained, tmp_path):
    # weights trained with max_depth 5 must keep predicting up to 5 m even if the caller
    # names the stock tiny-mirror config (max_depth 10)
    model = trained["model"]
    recorded = ModelConfig.from_dict({**model.config.to_dict(), "name": "my-mirror",
                                      "max_depth": 5.0})
    original = model.config
    model.config = recorded
    try:
        path = save_weights(model, tmp_path / "custom.safetensors")
    finally:
        model.config = original
    rebuilt = create_model("tiny-mirror", weights=str(path))
    assert rebuilt.config.name == "my-mirror" and rebuilt.config.max_depth == 5.0


def test_weights_remember_the_backbone_file_they_were_trained_on(tmp_path):
    # a head-only file trained on a local backbone file must not come back on a random one
    torch.manual_seed(11)
    clip = _open_clip().create_model("cdr-tiny-vit", pretrained=None,
                                     force_image_size=(192, 256))
    backbone = tmp_path / "backbone.safetensors"
    safetensors.torch.save_file({k: v.contiguous() for k, v in clip.state_dict().items()},
                                str(backbone))
    model = create_model("tiny-mirror", backbone_weights=str(backbone))
    head = save_weights(model, tmp_path / "head.safetensors",
                        metadata={"backbone_weights": str(backbone)})
    rebuilt = create_model(weights=str(head))  # no backbone_weights given
    torch.testing.assert_close(_out(rebuilt), _out(model))
