"""Runtime side: model bundles, image conversion, pre-processing and inference backends.

Imports neither torch nor rclpy (the robot's encoder process must start without torch); the torch backend imports
torch lazily inside itself. Submodules are imported explicitly by their users:
`sage_ros.runtime.bundle`, `.image_codec`, `.preprocess`, `.backends`.
"""
