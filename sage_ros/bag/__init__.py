"""rosbag2 tools: play (live topics), record (to mcap) and encode (offline, no DDS), all via `rosbags`.

Imports go one way: `play` / `record` / `encode` -> `common` (opening, topic selection) -> `recover` (salvage of a
damaged bag) -> `core` (BagError, type store, QoS record, atomic bag writer). `core`, `recover`, `common` and
`encode` import no rclpy; `live`, `play` and `record` do (they talk to DDS).
"""
