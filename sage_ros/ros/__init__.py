"""ROS 2 side of sage_ros: the encoder nodes (encoder_node), their parameters (params), QoS (qos),
/diagnostics (diagnostics) and the frame -> message functions they run (encoding). The only package that
imports rclpy; nothing here imports torch.
"""
