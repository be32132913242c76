"""CLIPSelf: the objective improves, the teacher stays frozen, the output is a backbone file,
and images come from folders or rosbag2 topics (tiny tower at 64x64, a few steps)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clip_depth_ros.config import get_model_config
from clip_depth_ros.model import create_model
from clip_depth_ros.model.backbone import ImageEncoder
from training.clipself import (build_clip, dense_features, frozen_teacher, grid_boxes,
                               load_images, main, normalise, patch_crop_cosine, save_backbone,
                               train_clipself)
from model_helpers import random_backbone_file

TOPIC = "/camera/image_raw"


@pytest.fixture(scope="module")
def config():
    return replace(get_model_config("tiny-depthclip"), name="tiny64", input_size=[64, 64])


@pytest.fixture(scope="module")
def backbone(config, tmp_path_factory):
    return random_backbone_file(config, tmp_path_factory.mktemp("bb"))


@pytest.fixture(scope="module")
def images(config):
    from training.data.synthetic import SyntheticDepthDataset
    data = SyntheticDepthDataset("indoor", 6, size=(48, 64), seed=5)
    return torch.from_numpy(np.stack([cv2.resize(data[i]["image"], (64, 64))
                                      for i in range(len(data))]))


def _visual_state(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_grid_boxes_tile_the_map():
    boxes = grid_boxes(2, 3, 4.0, 6.0)
    assert boxes.shape == (6, 4)
    area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).sum()
    assert float(area) == pytest.approx(24.0)
    assert torch.allclose(boxes[-1], torch.tensor([4.0, 2.0, 6.0, 4.0]))


def test_dense_map_is_what_depthclip_reads(config, backbone, images):
    model = create_model(config, backbone_weights=backbone)
    x = normalise(images[:2], config)
    dense = F.normalize(dense_features(ImageEncoder(model.image_encoder.visual, [-1]), x), dim=1)
    logits = torch.einsum("bdhw,kd->bkhw", dense, model.head.text_embedding)
    expected = torch.softmax(logits / model.head.temperature, dim=1)
    probs = model.head.bin_probabilities(model.image_encoder, x, model.head.text_embedding)
    assert torch.allclose(probs, expected, atol=1e-6)


def test_cosine_rises_and_teacher_stays_frozen(config, backbone, images):
    clip = build_clip(config, backbone)
    teacher = frozen_teacher(clip.visual)
    teacher_before = _visual_state(teacher)
    text_before = clip.token_embedding.weight.detach().clone()
    student_before = _visual_state(clip.visual)
    before = patch_crop_cosine(clip, images, 2, teacher=teacher, config=config)
    losses = train_clipself(clip, teacher, images, config, steps=6, batch=4, lr=1e-3,
                            grid=(2, 3), seed=0, progress=False)
    after = patch_crop_cosine(clip, images, 2, teacher=teacher, config=config)
    assert len(losses) == 6 and all(np.isfinite(losses))
    assert after > before + 0.05, (before, after)
    assert all(not p.requires_grad for p in teacher.parameters())
    for key, value in _visual_state(teacher).items():
        assert torch.equal(value, teacher_before[key]), key
    assert torch.equal(clip.token_embedding.weight, text_before)  # text tower untouched
    assert any(not torch.equal(v, student_before[k]) for k, v in _visual_state(clip.visual).items())
    # before training, student and teacher are the same tower: self-consistency = vs teacher
    fresh = build_clip(config, backbone)
    assert patch_crop_cosine(fresh, images, 2, config=config) == pytest.approx(before, abs=1e-6)


def test_saved_backbone_loads_into_depth_models(config, backbone, images, tmp_path):
    clip = build_clip(config, backbone)
    train_clipself(clip, frozen_teacher(clip.visual), images, config, steps=2, batch=2,
                   lr=1e-3, grid=(1, 2), progress=False)
    path = save_backbone(clip, tmp_path / "refined.safetensors", {"steps": 2})
    model = create_model(config, backbone_weights=str(path), for_training=True)
    loaded = model.image_encoder.visual.state_dict()
    for key, value in clip.visual.state_dict().items():
        assert torch.equal(loaded[key], value), key
    assert torch.equal(model.text_encoder.token_embedding.weight, clip.token_embedding.weight)
    mirror = create_model(replace(get_model_config("tiny-mirror"), input_size=[64, 64]),
                          backbone_weights=str(path))
    assert torch.equal(mirror.image_encoder.visual.conv1.weight, clip.visual.conv1.weight)


def test_convolutional_tower_trains(images):
    # regression: a channels-last input batch (a permuted uint8 tensor made float) corrupted
    # the heap in the CPU backward of the FastViT tower; normalise() returns plain NCHW
    config = get_model_config("tiny-fastvit-mirror")
    assert normalise(images[:2], config).is_contiguous()
    small = torch.from_numpy(np.stack([cv2.resize(im.numpy(), (128, 96)) for im in images]))
    torch.manual_seed(0)
    clip = build_clip(config, "random")
    teacher = frozen_teacher(clip.visual)
    losses = train_clipself(clip, teacher, small, config, steps=2, batch=2, lr=1e-3,
                            grid=(1, 3), progress=False)
    assert all(np.isfinite(losses))
    assert 0 < patch_crop_cosine(clip, small, 2, teacher, config) <= 1


# ---------------------------------------------------------------------------- image sources
def _stamp(typestore, i):
    header = typestore.types["std_msgs/msg/Header"]
    time = typestore.types["builtin_interfaces/msg/Time"]
    return header(stamp=time(sec=i, nanosec=0), frame_id="camera")


def _raw_msg(typestore, i, rgb, encoding, pad=0):
    image = typestore.types["sensor_msgs/msg/Image"]
    pixels = {"rgb8": rgb, "bgr8": rgb[..., ::-1], "mono8": rgb[..., :1]}[encoding]
    h, w, c = pixels.shape
    rows = np.zeros((h, w * c + pad), np.uint8)
    rows[:, :w * c] = pixels.reshape(h, w * c)
    return image(header=_stamp(typestore, i), height=h, width=w, encoding=encoding,
                 is_bigendian=0, step=w * c + pad, data=rows.ravel())


def write_bag(path: Path, topics: dict[str, list]) -> Path:
    """A rosbag2 with the given topic -> [message, ...] (stamps 0, 1, 2 ... s)."""
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import Stores, get_typestore
    typestore = get_typestore(Stores.ROS2_HUMBLE)
    with Writer(path, version=8) as writer:
        for topic, messages in topics.items():
            conn = writer.add_connection(topic, messages[0].__msgtype__, typestore=typestore)
            for i, msg in enumerate(messages):
                writer.write(conn, i * 10**9 + 1, typestore.serialize_cdr(msg, msg.__msgtype__))
    return path


def _colours():
    return [np.full((12, 16, 3), (40 * i, 200 - 30 * i, 90), np.uint8) for i in range(3)]


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    from rosbags.typesys import Stores, get_typestore
    ts = get_typestore(Stores.ROS2_HUMBLE)
    compressed = ts.types["sensor_msgs/msg/CompressedImage"]
    text = ts.types["std_msgs/msg/String"]
    topics = {
        TOPIC: [_raw_msg(ts, i, c, "rgb8") for i, c in enumerate(_colours())],
        "/bgr": [_raw_msg(ts, i, c, "bgr8", pad=4) for i, c in enumerate(_colours())],
        "/mono": [_raw_msg(ts, i, c, "mono8") for i, c in enumerate(_colours())],
        "/png": [compressed(header=_stamp(ts, i), format="png", data=np.frombuffer(
            cv2.imencode(".png", c[..., ::-1])[1].tobytes(), np.uint8))
            for i, c in enumerate(_colours())],
        "/chatter": [text(data="hello")],
    }
    return write_bag(tmp_path_factory.mktemp("bags") / "images", topics)


@pytest.mark.parametrize("topic", [TOPIC, "/bgr", "/png"])
def test_bag_colour_topics(config, bag, topic):
    loaded = load_images(bag, config, topic)
    assert loaded.shape == (3, 64, 64, 3) and loaded.dtype == torch.uint8
    for got, colour in zip(loaded, _colours()):
        assert torch.equal(got[10, 20], torch.from_numpy(colour[0, 0]))


def test_bag_mono_topic_and_thinning(config, bag):
    loaded = load_images(bag, config, "/mono", max_images=2)
    assert loaded.shape == (2, 64, 64, 3)
    assert int(loaded[1, 0, 0, 0]) == int(_colours()[2][0, 0, 0])  # first and last frames
    assert torch.equal(loaded[..., 0], loaded[..., 2])


def test_cli_trains_from_a_bag(config, backbone, bag, tmp_path):
    config_path = tmp_path / "tiny64.json"
    config_path.write_text(config.to_json())
    out = tmp_path / "refined.safetensors"
    assert main(["--model", str(config_path), "--backbone-weights", backbone, "--images",
                 str(bag), "--image-topic", TOPIC, "--out", str(out), "--steps", "2",
                 "--batch", "2", "--grid", "1", "2", "--device", "cpu"]) == 0
    model = create_model(str(config_path), backbone_weights=str(out))
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 1, 64, 64)


def test_clear_errors(config, bag, tmp_path):
    with pytest.raises(FileNotFoundError, match="image folder not found: .*nowhere"):
        load_images(tmp_path / "nowhere", config)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no .png/.jpg/.jpeg images in"):
        load_images(tmp_path / "empty", config)
    with pytest.raises(ValueError, match=f"has no topic '/missing'.*{TOPIC}"):
        load_images(bag, config, "/missing")
    with pytest.raises(ValueError, match="std_msgs/msg/String on '/chatter'"):
        load_images(bag, config, "/chatter")
    with pytest.raises(ValueError, match="pass the image topic"):
        load_images(bag, config)
