"""The end-to-end demo: two or more cameras through the whole system, on one machine.

* :mod:`~keyreid_stream.demo.views` -- two overlapping camera views cut from the sample video.
* :mod:`~keyreid_stream.demo.models` -- the best models available here (YOLO-pose + KeyRe-ID, or the classical
  fallback: HOG + keypoint prior + part colour/texture histograms), and why.
* :mod:`~keyreid_stream.demo.processes` -- the matcher and the workers as child processes.
* :mod:`~keyreid_stream.demo.run` -- :func:`run_demo`: Redis, matcher, workers, wait, read back the identities.
* :mod:`~keyreid_stream.demo.summary` -- identities per camera and link latencies, read from the matcher's API.
* :mod:`~keyreid_stream.demo.text` -- the demo's printed summary.
"""

from keyreid_stream.demo.models import ModelChoice, choose_models
from keyreid_stream.demo.run import DemoCamera, DemoResult, DemoTimeout, prepare_cameras, run_demo
from keyreid_stream.demo.text import format_result

__all__ = ["DemoCamera", "DemoResult", "DemoTimeout", "ModelChoice", "choose_models", "format_result",
           "prepare_cameras", "run_demo"]
