"""Procedural indoor and street scenes rendered by analytic ray casting (RGB + metric z-depth).

Numpy (+ OpenCV for the sensor effects).  ``primitives`` describes scenes, ``render``
ray-casts and lights them, ``scene`` and ``street`` compose random rooms and streets,
``sampling`` draws random scenes and camera poses; ``worlds`` composes the varied world
families (with the held-out hall family) that train the demo model, from ``photos`` (real
photographs as textures) and ``sensor`` (a real camera's degradations).
"""
from clip_depth_ros.synthetic.primitives import (
    Box,
    CameraPose,
    Cylinder,
    Ground,
    Material,
    Room,
    Scene,
)
from clip_depth_ros.synthetic.render import render
from clip_depth_ros.synthetic.sampling import SCENE_KINDS, random_pose, random_scene
from clip_depth_ros.synthetic.scene import demo_trajectory, random_indoor_scene
from clip_depth_ros.synthetic.street import StreetScene, random_street_scene, street_trajectory

__all__ = [
    "Box",
    "CameraPose",
    "Cylinder",
    "Ground",
    "Material",
    "Room",
    "SCENE_KINDS",
    "Scene",
    "StreetScene",
    "demo_trajectory",
    "random_indoor_scene",
    "random_pose",
    "random_scene",
    "random_street_scene",
    "render",
    "street_trajectory",
]
