"""ROS 2 side of sage_ros, the only package that imports rclpy (besides bag/ play and record).

Encoder nodes: encoder_node (the lifecycle node), params (its declared parameters), qos, diagnostics, and
encoding (the frame -> message functions it runs, also used offline by `sage-ros bag encode`). Nothing on the
encoder node's import path imports torch. compression_node and workspace serve the offline jobs. run: the one
start / spin / shutdown entry (run_node) of every node's main().
"""
