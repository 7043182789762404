"""Keypoints: pose backends, part heatmaps rendered on the model's device (``heatmaps``), keypoint stores.

Submodules are imported explicitly (``from keyreid_stream.keypoints.heatmaps import ...``) so that the parts
that need torch are only loaded where they are used.
"""
