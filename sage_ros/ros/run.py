"""The one way a sage_ros node process starts and stops: run_node, used by every node's main().

    rclpy.init   -> fails (e.g. a --params-file that does not exist or does not parse): one line, exit 2
    make_node()  -> an invalid parameter (ParameterException): one line, exit 2
    start(node)  -> False (e.g. an encoder's autostart could not configure/activate): exit 1
    spin until Ctrl-C / SIGTERM, then close(node), destroy_node, rclpy.try_shutdown: exit 0
"""
from __future__ import annotations

import sys
from typing import Callable, TypeVar

import rclpy
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node

N = TypeVar("N", bound=Node)


def init_rclpy_or_explain(args: list[str] | None, name: str) -> bool:
    """rclpy.init; False after one clear line on stderr when it fails (a --params-file that does not exist or
    does not parse raises RCLError, a RuntimeError, from deep inside rcl)."""
    try:
        rclpy.init(args=args)
    except RuntimeError as err:
        print(f"[{name}] cannot start: {str(err).split(', at ')[0]} (check --ros-args, e.g. that the "
              "--params-file exists and is valid YAML)", file=sys.stderr)
        return False
    return True


def run_node(name: str, make_node: Callable[[], N], args: list[str] | None = None, *,
             start: Callable[[N], bool] | None = None, close: Callable[[N], None] | None = None) -> int:
    """Run one node until Ctrl-C / SIGTERM; returns the process exit code (see the module docstring).

    `name` prefixes the error lines (the node's name); `close(node)` frees what the node holds before
    destroy_node (it runs whenever the node was made, also after a failed `start`)."""
    if not init_rclpy_or_explain(args, name):
        return 2
    node = None
    try:
        try:
            node = make_node()
        except ParameterException as err:
            print(f"[{name}] invalid parameter: {err}", file=sys.stderr)
            return 2
        if start is not None and not start(node):
            return 1
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            if close is not None:
                close(node)
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
