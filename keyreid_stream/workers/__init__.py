"""Camera worker package: video sources, person detectors and the per-camera processing pipeline."""
