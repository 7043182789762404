"""Keypoints: 17 COCO joints per person, and the part heatmaps KeyRe-ID weights its patch tokens with.

* ``pose`` -- the pose-backend interface, person selection in crops, the ``prior`` layout; ``backends`` -- ``create_backend``;
  ``pifpaf``, ``yolo_pose`` and ``blazepose`` -- the pose models; ``pifpaf_build`` -- compiling openpifpaf for this torch.
* ``heatmaps`` -- rendering part heatmaps and their patch weights in torch, on any device; keypoint flips.
* ``store`` and ``extract`` -- the on-disk keypoint store of a dataset and the resumable extraction into it.

Submodules are imported explicitly (``from keyreid_stream.keypoints.heatmaps import ...``) so that the parts
that need torch, ultralytics or openpifpaf are only loaded where they are used. See docs/keypoints.md.
"""
