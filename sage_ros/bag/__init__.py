"""rosbag2 tools: play (live topics), record (to mcap) and encode (offline, no DDS), all via `rosbags`.

`common` and `encode` import no rclpy; `play` and `record` do (they talk to DDS).
"""
