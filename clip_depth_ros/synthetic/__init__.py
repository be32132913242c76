"""Procedural indoor scenes rendered by analytic ray casting (RGB + metric z-depth), pure numpy."""
from clip_depth_ros.synthetic.scene import (
    Box,
    CameraPose,
    Cylinder,
    Material,
    Room,
    Scene,
    demo_trajectory,
    random_indoor_scene,
    render,
)

__all__ = [
    "Box",
    "CameraPose",
    "Cylinder",
    "Material",
    "Room",
    "Scene",
    "demo_trajectory",
    "random_indoor_scene",
    "render",
]
