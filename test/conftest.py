"""Shared test set-up.

DDS isolation: every pytest process gets its own ROS domain and localhost-only discovery, so tests running
at the same time on one machine (or a developer's live robot graph) never see each other's topics.
Child processes started by tests inherit these variables.
"""
import os

os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("PYTHONUNBUFFERED", "1")


import pytest  # noqa: E402  (after the environment above, which child processes inherit)


@pytest.fixture
def rclpy_context():
    """A fresh rclpy Context for one in-process node test, shut down after it (rclpy imported only when used)."""
    import rclpy

    context = rclpy.Context()
    rclpy.init(context=context)
    yield context
    rclpy.try_shutdown(context=context)
