"""ament_python build for sage_ros: `colcon build` on a robot, `pip install -e .` for development."""
import os
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "sage_ros"


def _shipped_model_files():
    """models/<bundle>/<file> -> share/sage_ros/models/<bundle>/ (data_files wants one entry per directory)."""
    entries = {}
    for path in glob("models/**/*", recursive=True):
        if os.path.isfile(path):  # not "has a dot": run directories such as L16_sum_b0.001 have one
            directory = path.rsplit("/", 1)[0]
            entries.setdefault(f"share/{PACKAGE}/{directory}", []).append(path)
    return sorted(entries.items())


setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*", "bench", "bench.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
        *_shipped_model_files(),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="sage_ros maintainers",
    maintainer_email="sage-ros@example.com",
    description="Compact VAE latents from robot cameras, and the pipeline that makes the models.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "sage-ros = sage_ros.cli:main",
            "tinyvae_encoder = sage_ros.ros.encoder_node:main_tinyvae",
            "puzzle_encoder = sage_ros.ros.encoder_node:main_puzzle",
            "latent_decoder = sage_ros.ros.decoder_node:main",
            "compression_node = sage_ros.ros.compression_node:main",
        ],
    },
)
