"""Launch the offline compression node: one job from a YAML file inside a workspace directory.

    ros2 launch sage_ros compression.launch.py workspace:=/data/sage_ws job_file:=jobs/train_tiny.yaml
    ros2 service call /compression_node/start std_srvs/srv/Trigger
    ros2 topic echo /compression_node/progress
    ros2 service call /compression_node/cancel std_srvs/srv/Trigger

Defaults come from config/compression.yaml (which equals the code's defaults); launch arguments override them.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue


def generate_launch_description():
    config = os.path.join(get_package_share_directory("sage_ros"), "config", "compression.yaml")
    arguments = [
        DeclareLaunchArgument("workspace", description="directory every job path must stay inside (required)"),
        DeclareLaunchArgument("job_file", default_value="job.yaml", description="job YAML, relative to workspace"),
        DeclareLaunchArgument("autostart", default_value="false", description="start the job at launch"),
        DeclareLaunchArgument("namespace", default_value="", description="node namespace"),
    ]
    node = Node(
        package="sage_ros",
        executable="compression_node",
        name="compression_node",
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        parameters=[
            config,
            {
                "workspace": LaunchConfiguration("workspace"),
                "job_file": LaunchConfiguration("job_file"),
                "autostart": ParameterValue(LaunchConfiguration("autostart"), value_type=bool),
            },
        ],
    )
    return LaunchDescription([*arguments, node])
