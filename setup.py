"""ament_python package: `colcon build` in a ROS 2 workspace, or `pip install -e .`.

Installs the `clip_depth_ros` package only, with everything its commands need (model configs,
bundled weights, data/depth.yaml, data/fastdds_shm.xml, the benchmarks).  The `training/`
folder is not installed: a top-level module named `training` would claim a generic name in
site-packages that other packages use; training runs from a checkout
(`python -m training.train` in the repository root).
"""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "clip_depth_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    # data/ holds links to config/ in a checkout; a build copies the files they point to
    package_data={PACKAGE: ["model_configs/*.json", "model_configs/backbones/*.json",
                            "models/*.safetensors", "models/*.json",
                            "data/*.yaml", "data/*.xml"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config",
         glob("config/*.yaml") + glob("config/*.xml") + glob("config/*.rviz")),
    ],
    install_requires=["setuptools", "numpy", "opencv-python-headless", "torch",
                      "open_clip_torch", "safetensors", "pyyaml", "tqdm"],
    extras_require={"onnx": ["onnx", "onnxruntime"], "tensorrt": ["tensorrt"],
                    "openvino": ["onnx", "onnxruntime", "openvino"],
                    "training": ["h5py", "tensorboard", "tqdm", "matplotlib", "peft", "scikit-image"],
                    "bags": ["rosbags"]},
    zip_safe=False,
    maintainer="clip_depth_ros developers",
    maintainer_email="dev@clip-depth-ros.local",
    description="CLIP-based monocular metric depth for ROS 2",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "depth_node = clip_depth_ros.ros.main:main",
            "demo = clip_depth_ros.ros.demo:main",
            "clip-depth = clip_depth_ros.cli:main",
        ],
    },
)
