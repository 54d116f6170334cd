"""sage_ros: compact VAE latents from robot cameras (ROS 2), and the offline pipeline that makes the models.

Layering (docs/design.md "Layers", enforced by .importlinter): each part imports only from the parts below it;
runtime/ imports neither torch nor rclpy; compression/ and models/ import torch.
"""
__version__ = "0.1.0"
