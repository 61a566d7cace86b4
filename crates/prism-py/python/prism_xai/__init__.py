"""Prism from Python: LRP attributions, heatmaps, SpRAy and the viewer on any ONNX model."""

from ._errors import *  # noqa: F401,F403
from ._prism import __version__, get_num_threads, set_num_threads  # noqa: F401
