"""Type stubs of the extension module ``prism_xai._prism`` (Rust, PyO3): the low-level layer the
public API in ``prism_xai`` wraps. Prefer ``prism_xai``'s functions; these take the same
arguments in their plainest form (``str`` paths, a ``method`` dict)."""

import os
from typing import Any, Callable, Dict, List, Literal, Optional, Sequence, Tuple, Union

import numpy as np

__version__: str
METHOD_KEYS: Tuple[str, ...]

DType = Literal["float32", "float64"]
Inputs = Union[np.ndarray, Dict[str, np.ndarray]]
ProgressFn = Callable[[Dict[str, Any]], None]

def set_num_threads(n: Optional[int] = None) -> None:
    """Sets the number of threads Prism computes on (``None`` or 0: all cores)."""

def get_num_threads() -> int:
    """The number of threads Prism computes on."""

class Model:
    """An ONNX model loaded by Prism's libraries."""

    path: str
    inputs: List[Dict[str, Any]]
    """``[{"name": str, "shape": list[int | str], "dtype": "float32" | "int64" | ...}]``"""
    outputs: List[Dict[str, Any]]
    """``[{"name": str, "shape": list[int | str]}]``"""

    allow_nonfinite: bool
    def __init__(self, path: Union[str, os.PathLike[str]], *,
                 allow_nonfinite: bool = False) -> None: ...
    def predict(self, inputs: Inputs, *, dtype: DType = "float32",
                batch_size: int = 16) -> np.ndarray:
        """The first output for every sample; any float dtype and layout (one copy)."""
    def explain(
        self,
        inputs: Inputs,
        *,
        target: Union[str, int, np.ndarray] = "predicted",
        dtype: DType = "float32",
        batch_size: int = 16,
        attribute_at: Optional[str] = None,
        method: Optional[Dict[str, Any]] = None,
        reduce_hidden: str = "none",
        concepts: Optional[Dict[str, Any]] = None,
    ) -> Tuple[np.ndarray, np.ndarray, str, List[Dict[str, Any]]]:
        """``(relevance, targets int64 [rows], the attributed tensor's name, recorded)``;
        ``method``: a dict of ``METHOD_KEYS`` (unknown key: ``InvalidArgumentError`` naming the
        valid ones); ``concepts``: ``{"conditions", "exclude_parallel", "record",
        "record_mode", "top_k"}``, ``recorded``: one dict per recorded node (``node``,
        ``tensor``, ``sample_shape``, ``relevance``, ``activation``, ``top_channels``,
        ``top_share``)."""
    def rules(self, inputs_or_shapes: Any, *,
              method: Optional[Dict[str, Any]] = None) -> List[Tuple[str, str, str]]:
        """``(node, op, rule)`` per node of the canonized graph."""

def render(
    relevance: np.ndarray,
    *,
    cmap: str = "bwr",
    level: float = 1.0,
    symmetric: bool = False,
    absolute: bool = False,
    vmin: Optional[float] = None,
    vmax: Optional[float] = None,
    channels: str = "sum",
) -> List[np.ndarray]:
    """``uint8 [H, W, 3]`` per sample of ``[N, C, H, W]``, ``[N, H, W]`` or ``[H, W]``
    relevance; pixel-identical to ``prism heatmap``."""

def overlay(
    relevance: np.ndarray,
    images: np.ndarray,
    *,
    alpha: float = ...,
    cmap: str = "bwr",
    level: float = 1.0,
    symmetric: bool = False,
    absolute: bool = False,
    vmin: Optional[float] = None,
    vmax: Optional[float] = None,
    channels: str = "sum",
) -> List[np.ndarray]:
    """Heatmaps blended over grayscale inputs (``prism heatmap --overlay``)."""

def grid(images: List[np.ndarray], shape: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """One ``uint8 [H, W, 3]`` image tiling ``images`` (``prism heatmap --grid``)."""

def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of a ``uint8 [H, W, 3]`` or ``[H, W]`` image."""

def colormaps() -> List[str]:
    """The built-in colour map names."""

def attribute(
    model: str,
    dataset: str,
    output: str,
    *,
    method: Optional[Dict[str, Any]] = None,
    target: Union[str, int] = "label",
    batch_size: int = 16,
    shard: Optional[str] = None,
    limit: Optional[int] = None,
    compression: Optional[str] = None,
    prefetch: int = 2,
    force: bool = False,
    dataset_kind: Optional[str] = None,
    labels: Optional[str] = None,
    resize: Optional[int] = None,
    crop: Optional[int] = None,
    normalize: Optional[str] = None,
    channels: Optional[int] = None,
    scale: Optional[float] = None,
    record: Optional[List[str]] = None,
    record_mode: Optional[str] = None,
    top_k: Optional[int] = None,
    progress: Optional[ProgressFn] = None,
) -> Dict[str, Any]:
    """``prism attribute``; progress events ``{"event": "started", "total", "done",
    "resumed", "output"}`` then ``{"event": "part", "done", "total"}`` per batch."""

def concepts(
    model: str,
    dataset: str,
    output: str,
    *,
    layers: Union[str, List[str]],
    method: Optional[Dict[str, Any]] = None,
    target: Union[str, int] = "label",
    top_n: int = 40,
    crops: int = 8,
    sample_heatmaps: int = 0,
    batch_size: int = 16,
    shard: Optional[str] = None,
    limit: Optional[int] = None,
    prefetch: int = 2,
    force: bool = False,
    allow_nonfinite: bool = False,
    dataset_kind: Optional[str] = None,
    labels: Optional[str] = None,
    resize: Optional[int] = None,
    crop: Optional[int] = None,
    normalize: Optional[str] = None,
    channels: Optional[int] = None,
    scale: Optional[float] = None,
    progress: Optional[ProgressFn] = None,
) -> Dict[str, Any]:
    """``prism concepts`` (the composite is epsilon-plus-flat when ``method`` names none);
    progress events as ``attribute``'s, then ``{"event": "computed"}`` and ``{"event":
    "step", "what"}`` per layer's selection and crops."""

def tcav(
    model: str,
    layer: str,
    target: int,
    concepts: Union[Dict[str, str], List[Any]],
    randoms: Union[Dict[str, str], List[Any]],
    inputs: str,
    *,
    output: Optional[str] = None,
    plot: Optional[str] = None,
    seed: int = 0,
    dtype: str = "f32",
    alpha: float = 0.05,
    l2: float = 0.01,
    test_fraction: float = 0.33,
    batch_size: int = 32,
    allow_nonfinite: bool = False,
    dataset_kind: Optional[str] = None,
    labels: Optional[str] = None,
    resize: Optional[int] = None,
    crop: Optional[int] = None,
    normalize: Optional[str] = None,
    channels: Optional[int] = None,
    scale: Optional[float] = None,
) -> Dict[str, Any]:
    """Tests concepts with concept activation vectors (TCAV), as ``prism tcav``; the report
    as a dict."""

def analyze(attribution: str, output: str, *, progress: Optional[ProgressFn] = None,
            **options: Any) -> Dict[str, Any]:
    """``prism analyze``, every option in snake case."""

def project(dataset: str, attributions: List[str], output: str, *,
            analyses: Sequence[str] = (), **options: Any) -> Dict[str, Any]:
    """``prism project``."""

def evaluate(model: str, inputs: Any, output_dir: str, *, methods: List[str],
             **options: Any) -> Dict[str, Any]:
    """``prism evaluate``."""

class AttributionFile:
    """An attribution file, read lazily."""

    shape: Tuple[int, ...]
    labels: np.ndarray
    method: str
    def __len__(self) -> int: ...
    def classes(self) -> List[int]: ...
    def indices(self, class_: Optional[int] = None) -> np.ndarray: ...
    def read(self, indices: Optional[Sequence[int]] = None,
             class_: Optional[int] = None) -> np.ndarray: ...
    def record(self) -> Optional[Dict[str, Dict[str, Any]]]: ...

class AnalysisFile:
    """An analysis file, read lazily."""

    def categories(self) -> List[str]: ...
    def category(self, name: str) -> Dict[str, np.ndarray]: ...

def read_attribution(path: str) -> AttributionFile: ...
def read_analysis(path: str) -> AnalysisFile: ...
def read_concepts(path: str) -> Dict[str, Any]:
    """A concepts file as numpy arrays (see ``prism_xai.read_concepts``)."""

class Server:
    """The viewer, running on a background thread."""

    url: str
    def stop(self) -> None: ...

def serve(projects: List[str], *, host: str = "127.0.0.1", port: int = 8080,
          cache_mib: int = 256, allow_remote: bool = False, allowed_hosts: List[str] = ...,
          token: Union[bool, str, None] = None) -> Server: ...
