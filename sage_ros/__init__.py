"""sage_ros: compact VAE latents from robot cameras (ROS 2), and the offline pipeline that makes the models.

Layering (DESIGN.md): ros/ and cli.py may import anything; runtime/ imports neither torch nor rclpy;
compression/ imports torch; models/ imports only torch.
"""
__version__ = "0.1.0"
