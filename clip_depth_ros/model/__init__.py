"""Depth models: open_clip backbone wrappers, one module per method, and the factory."""
from .depth_model import DepthModel
from .factory import RANDOM_BACKBONE, create_model, load_weights, save_weights, trained_state

__all__ = ["DepthModel", "RANDOM_BACKBONE", "create_model", "load_weights", "save_weights",
           "trained_state"]
