"""Inference: running a trained re-ID model, shared by the camera worker, the matcher's image search, evaluation and
training.

* ``device`` -- :func:`~keyreid_stream.inference.device.resolve_device` (``auto`` -> the first GPU, else the CPU),
  :func:`~keyreid_stream.inference.device.device_name` (the same as a name, for ultralytics and openpifpaf) and
  :func:`~keyreid_stream.inference.device.resolve_amp` (the autocast precision).
* ``model_source`` -- refusing an unsafe ultralytics model source before anything loads it.
* ``loading`` -- :func:`~keyreid_stream.inference.loading.load_embedding_model`: a checkpoint file or a weights
  catalogue name -> an :class:`~keyreid_stream.inference.loading.EmbeddingModel` with its name and version.
* ``clips`` -- :func:`~keyreid_stream.inference.clips.embed_clips`: dense clips through the model, batched.
* ``embedder`` -- :class:`~keyreid_stream.inference.embedder.TrackletEmbedder`: descriptors of in-memory
  tracklets, the evaluation code path on crops.

Submodules are imported explicitly, so that the ones that need torch load it only where they are used.
"""
