"""Build depth models by name: ``create_model(name, weights=..., device=..., precision=...)``.

The backbone comes from open_clip (a pretrained tag for users with a model hub, a local
weights file, or random init); trained parts come from a safetensors file with a JSON
sidecar and are checked key by key.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Optional, Union

import torch

from ..config import (BACKBONE_CONFIG_DIR, BUNDLED_WEIGHTS_DIR, ConfigError, ModelConfig,
                      get_model_config, resolve_weights)
from ..weights import (WeightsError, load_state_strict, load_tensor_file, read_sidecar,
                       save_tensor_file)
from .backbone import TextEncoder
from .conv_backbone import build_image_encoder
from .depth_model import DepthModel

log = logging.getLogger("clip_depth_ros")

RANDOM_BACKBONE = "random"
PARTS = ("image_encoder", "text_encoder", "head")
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
_WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")
_registered = False


def _open_clip():
    """Import open_clip with our backbone architectures (tiny test towers) registered."""
    global _registered
    import open_clip
    if not _registered:
        open_clip.add_model_config(BACKBONE_CONFIG_DIR)
        _registered = True
    return open_clip


class _OpenClipChatter(logging.Filter):
    """Drops open_clip's INFO progress lines and, when ``random_expected``, its "initialized
    randomly" warning: the caller loads the backbone right after (or was asked for random)."""

    def __init__(self, random_expected: bool):
        super().__init__()
        self.random_expected = random_expected

    def filter(self, record: logging.LogRecord) -> bool:
        if f"{os.sep}open_clip{os.sep}" not in record.pathname:
            return True
        if record.levelno < logging.WARNING:
            return False
        message = record.getMessage()
        return not (self.random_expected and ("initialized randomly" in message
                                              or "initialized partially" in message))


@contextlib.contextmanager
def _quiet_open_clip(random_expected: bool = False) -> Iterator[None]:
    """open_clip logs through the root logger; filter it there for the duration of a call."""
    root = logging.getLogger()
    chatter = _OpenClipChatter(random_expected)
    root.addFilter(chatter)
    try:
        yield
    finally:
        root.removeFilter(chatter)


def bundled_weights_for(name: Union[str, ModelConfig, None]) -> Optional[str]:
    """The weights bundled under a bundled model config's own name (demo-mirror), else None."""
    if not isinstance(name, str) or Path(name).suffix == ".json":
        return None
    path = BUNDLED_WEIGHTS_DIR / f"{name}.safetensors"
    return str(path) if path.is_file() else None


def resolve_model_weights(name: Union[str, ModelConfig, None], weights: Optional[str],
                          backbone_weights: Optional[str]) -> Optional[str]:
    """The trained parts a build loads: ``weights`` (a path or bundled name), else the bundled
    weights of a config name when the caller chose no backbone either, so ``model:
    demo-mirror`` runs the trained demo model and never a random one; None = no trained parts."""
    if weights:
        resolved = resolve_weights(weights)
        if not Path(resolved).is_file():
            raise WeightsError(f"weights '{weights}' not found: give a .safetensors file (with "
                               f"its .json sidecar) or a bundled name ({_bundled_names()})")
        return resolved
    if backbone_weights:  # a chosen backbone (a tag, a file, "random"): no trained parts
        return None
    return bundled_weights_for(name)


def resolve_config(name: Union[str, ModelConfig, None], weights: Optional[str],
                   sidecar: Optional[dict[str, Any]] = None) -> ModelConfig:
    """The model config: explicit name/config, else the one recorded with the weights
    (``sidecar``: the weights' sidecar when the caller has already read it)."""
    recorded = None
    if weights:
        side = sidecar if sidecar is not None else read_sidecar(weights)
        if "config" not in side:
            raise WeightsError(f"{weights}: sidecar has no model config")
        recorded = ModelConfig.from_dict(side["config"])
    if isinstance(name, ModelConfig):
        config = name
    elif name:
        config = get_model_config(name)
    elif recorded is not None:
        return recorded
    else:
        raise ConfigError("no model given: pass a model name/config or a weights file")
    if recorded is None:
        return config
    if (recorded.method, recorded.backbone.name) != (config.method, config.backbone.name):
        raise WeightsError(
            f"{weights} was trained for model '{recorded.name}' ({recorded.method} on "
            f"{recorded.backbone.name}), not '{config.name}' ({config.method} on "
            f"{config.backbone.name}); leave the model empty to use the recorded one")
    if recorded != config:
        # the weights were trained with the recorded settings (depth range, input size...)
        log.warning("using the model config recorded with %s ('%s'), not '%s'", weights,
                    recorded.name, config.name)
    return recorded


def backbone_source(config: ModelConfig, sidecar: Mapping[str, Any],
                    backbone_weights: Optional[str]) -> Optional[str]:
    """Where the backbone's weights come from, exactly as :func:`create_model` loads them:
    the caller's choice, else the tag or file the trained parts were trained on (their
    sidecar), else the config's own tag; None / "random" = random init.  Export caches key
    on this, so a changed backbone never serves a stale graph."""
    if backbone_weights is None:
        backbone_weights = sidecar.get("metadata", {}).get("backbone_weights")
    return config.backbone.pretrained if backbone_weights is None else backbone_weights


def _build_clip(config: ModelConfig, source: Optional[str],
                image_tower_in_weights: bool = False) -> torch.nn.Module:
    """The open_clip model with backbone weights from a tag, a local file, or random init.

    Random init is expected (and silent) when the trained parts include the image tower; asked
    for in words (``source == "random"``) it is warned about; otherwise it is refused, so no
    tool ever runs a random backbone by omission.
    """
    open_clip = _open_clip()
    is_file = bool(source) and (Path(source).suffix in _WEIGHT_SUFFIXES or os.path.exists(source))
    tag = None if (not source or is_file or source == RANDOM_BACKBONE) else source
    if config.backbone.name not in open_clip.list_models():
        raise ConfigError(f"unknown open_clip backbone '{config.backbone.name}'")
    if tag is None and not (is_file or image_tower_in_weights or source == RANDOM_BACKBONE):
        raise ConfigError(
            f"model '{config.name}' has no backbone weights (its config names no pretrained tag "
            "and no trained weights carry the image tower): give weights (e.g. bundled "
            f"{_bundled_names()}), backbone_weights as an open_clip tag or a local CLIP "
            "weights file, or backbone_weights 'random' to run a random backbone on purpose")
    try:
        # open_clip warns "initialized randomly" whenever no tag is given: false when a file
        # or the trained weights load the tower next, so only ours (below) speaks about it
        with _quiet_open_clip(random_expected=tag is None):
            clip = open_clip.create_model(config.backbone.name, pretrained=tag,
                                          force_image_size=tuple(config.input_hw),
                                          pretrained_text=False)
    except RuntimeError as exc:
        raise WeightsError(f"open_clip could not provide pretrained '{tag}' for "
                           f"{config.backbone.name}: {exc} (offline? pass a local weights file "
                           "as backbone_weights)") from None
    if is_file:
        state = load_tensor_file(source)
        from open_clip.model import resize_pos_embed
        resize_pos_embed(state, clip)  # checkpoints at 224 px into a model at another size
        load_state_strict(clip, state, f"backbone weights {source}")
    elif tag is None and not image_tower_in_weights:
        log.warning("backbone %s of model '%s' has random weights (backbone_weights: random)",
                    config.backbone.name, config.name)
    return clip


def _bundled_names() -> str:
    return ", ".join(sorted(p.stem for p in BUNDLED_WEIGHTS_DIR.glob("*.safetensors")))


def create_model(name: Union[str, ModelConfig, None] = None, weights: Optional[str] = None,
                 backbone_weights: Optional[str] = None, device: Union[str, torch.device] = "cpu",
                 precision: str = "fp32", for_training: bool = False) -> DepthModel:
    """Build a depth model.

    name: a bundled model name, a config JSON path or a ModelConfig (default: the config
      recorded with ``weights``).  weights: trained parts (.safetensors + sidecar), or the
      name of weights bundled with the package (``clip-depth models`` lists them); None with
      a bundled name that has bundled weights (demo-mirror) and no backbone_weights loads them.
    backbone_weights: an open_clip pretrained tag, a local CLIP weights file, "random", or
      None for the config's own tag; a backbone with none of these (and no image tower in
      the weights) is refused rather than run random.  for_training keeps the text encoder
      and train mode (LoRA unmerged); otherwise the text side is folded into a buffer, the
      text tower freed, LoRA merged into the tower and a convolutional tower reparameterised.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {sorted(PRECISIONS)}, got '{precision}'")
    backbone_weights = backbone_weights or None
    weights = resolve_model_weights(name, weights, backbone_weights)
    sidecar = read_sidecar(weights) if weights else {}
    config = resolve_config(name, weights, sidecar or None)
    parts = sidecar.get("parts", [])
    clip = _build_clip(config, backbone_source(config, sidecar, backbone_weights),
                       "image_encoder" in parts)
    with _quiet_open_clip():
        tokenizer = _open_clip().get_tokenizer(config.backbone.name)
    # Order matters for "moa" and LoRA: the backbone weights are in (original CLIP keys),
    # DepthModel inserts the adapters, then load_weights can restore trained adapters.
    model = DepthModel(config, build_image_encoder(clip.visual, config.backbone.feature_layers),
                       TextEncoder(clip, tokenizer))
    if weights:
        load_weights(model, weights)
    else:
        model.refresh_text_embedding()
    if for_training:
        model.train()
    else:
        model.drop_text_encoder()
        model.eval()
        model.merge_lora()
        model.reparameterize()
        model.requires_grad_(False)  # after both: fused / merged weights are new Parameters
    return model.to(device=device, dtype=PRECISIONS[precision])


def trained_state(model: DepthModel, parts: Iterable[str]) -> dict[str, torch.Tensor]:
    """The persistent state of the named parts (image_encoder, text_encoder, head)."""
    parts = tuple(parts)
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise ValueError(f"unknown parts {sorted(unknown)}; known: {PARTS}")
    return {k: v for k, v in model.state_dict().items() if k.split(".", 1)[0] in parts}


def save_weights(model: DepthModel, path: Union[str, os.PathLike],
                 parts: Iterable[str] = ("head",),
                 metadata: Optional[Mapping[str, Any]] = None) -> Path:
    """Save the named parts as safetensors + JSON sidecar (config, parts, metadata)."""
    if model.text_encoder is not None:
        model.refresh_text_embedding()  # the folded embedding must match the saved prompt
    parts = list(parts)
    config = model.config
    if "image_encoder" in parts and getattr(model.image_encoder, "reparameterized", False):
        raise WeightsError("the image tower is reparameterised (fused for inference): its keys "
                           "fit no fresh build; save from a for_training model")
    if config.lora is not None and not model.has_lora:
        config = dataclasses.replace(config, lora=None)  # merged: a plain tower now
    sidecar = {"config": config.to_dict(), "parts": parts, "metadata": dict(metadata or {})}
    return save_tensor_file(trained_state(model, parts), path, sidecar)


# Keys of parts newer than some trained weights (the focal-conditioning MLPs): weights made
# before them can start a fine-tune into a model that has them (load_weights(may_lack=...)).
NEW_PART_KEYS = (".camera.",)
# Keys of parts a fine-tune may leave out (the uncertainty head, retrained afterwards by
# training.uncertainty on the new weights): load_weights(may_drop=...) ignores them.
RETRAINED_PART_KEYS = (".uncertainty.",)


def load_weights(model: DepthModel, path: Union[str, os.PathLike],
                 may_lack: tuple[str, ...] = (),
                 may_drop: tuple[str, ...] = ()) -> dict[str, Any]:
    """Load trained parts into ``model`` with strict key, shape and dtype checks.

    may_lack: substrings of keys the file may lack (those keep the model's initial values);
    may_drop: substrings of keys the file may have that the model lacks (ignored); both only
    for starting a fine-tune, never for inference.
    """
    sidecar = read_sidecar(path)
    parts = sidecar.get("parts", ["head"])
    if model.text_encoder is None and "text_encoder" in parts:
        parts = [p for p in parts if p != "text_encoder"]
    state = load_tensor_file(path)
    if "text_encoder" not in parts:
        state = {k: v for k, v in state.items() if not k.startswith("text_encoder.")}
    expected = set(trained_state(model, parts).keys())
    if may_drop:
        dropped = {k for k in set(state) - expected if any(m in k for m in may_drop)}
        if dropped:
            log.info("weights %s: ignoring %d keys of parts this model leaves out (e.g. %s)",
                     path, len(dropped), sorted(dropped)[0])
            state = {k: v for k, v in state.items() if k not in dropped}
    if may_lack:
        lacking = {k for k in expected - set(state) if any(m in k for m in may_lack)}
        if lacking:
            log.info("weights %s lack %d new keys (e.g. %s); they keep their initial values",
                     path, len(lacking), sorted(lacking)[0])
        expected -= lacking
    load_state_strict(model, state, f"weights {path}", expected_keys=expected)
    return sidecar
