"""The output messages of ``clip-depth bag`` as rosbags objects, laid out as the node publishes
them: the rosbags :class:`~clip_depth_ros.frame.MessageKit` (the node's is
``clip_depth_ros.ros.conversions.RosMessageKit``).  No rclpy.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .bag_reader import CAMERA_INFO, IMAGE
from .geometry import Intrinsics
from .image_codec import POINTFIELD_FLOAT32, camera_info_fields, cloud_layout, encode_pixels

DEPTH_IMAGE, POINTS = IMAGE, "sensor_msgs/msg/PointCloud2"
# output key (frame.OUTPUT_TOPICS) -> message type written by the bag command
OUTPUT_TYPES = {"depth": DEPTH_IMAGE, "info": CAMERA_INFO, "points": POINTS,
                "confidence": DEPTH_IMAGE}


class BagMessages:
    """Builds the output messages as rosbags objects of one typestore."""

    def __init__(self, typestore: Any):
        self.types = typestore.types

    def image(self, array: np.ndarray, encoding: str, header: Any) -> Any:
        """sensor_msgs/Image (rosbags type)."""
        name, pixels = encode_pixels(array, encoding)
        height, width = pixels.shape[:2]
        step = width * pixels.dtype.itemsize * (pixels.shape[2] if pixels.ndim == 3 else 1)
        return self.types[IMAGE](header=header, height=height, width=width, encoding=name,
                                 is_bigendian=0, step=step,
                                 data=np.ascontiguousarray(pixels).reshape(-1).view(np.uint8))

    def camera_info(self, intrinsics: Intrinsics, header: Any, template: Any) -> Any:
        """sensor_msgs/CameraInfo (rosbags type)."""
        values = camera_info_fields(intrinsics, template)
        roi = self.types["sensor_msgs/msg/RegionOfInterest"](
            x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
        return self.types[CAMERA_INFO](
            header=header, height=values["height"], width=values["width"],
            distortion_model=values["distortion_model"],
            d=np.asarray(values["d"], dtype=np.float64), k=values["k"], r=values["r"],
            p=values["p"], binning_x=0, binning_y=0, roi=roi)

    def pointcloud2(self, body: np.ndarray, header: Any) -> Any:
        """sensor_msgs/PointCloud2 (rosbags type)."""
        cloud, names = cloud_layout(body)
        height, width = cloud.shape[:2]
        point_field = self.types["sensor_msgs/msg/PointField"]
        fields = [point_field(name=n, offset=4 * i, datatype=POINTFIELD_FLOAT32, count=1)
                  for i, n in enumerate(names)]
        return self.types[POINTS](
            header=header, height=height, width=width, fields=fields, is_bigendian=False,
            point_step=4 * len(names), row_step=4 * len(names) * width,
            data=np.ascontiguousarray(cloud).reshape(-1).view(np.uint8), is_dense=False)
