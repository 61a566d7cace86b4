"""Prism's exceptions. The extension raises these; every one carries Prism's own message."""


class PrismError(Exception):
    """Base class of every error Prism raises."""


class InvalidArgumentError(PrismError, ValueError):
    """A parameter or an input array is not acceptable (a wrong shape, a NaN, an unknown name)."""


class PrismFileNotFoundError(PrismError, FileNotFoundError):
    """A file Prism was asked to read does not exist."""


class ModelError(PrismError):
    """The ONNX model cannot be loaded or run (unsupported operator, bad graph)."""


class AttributionError(PrismError):
    """An attribution method cannot be built or run on this model."""


class HeatmapError(PrismError):
    """A heatmap cannot be rendered (bad colour map, bad shape)."""


class StoreError(PrismError):
    """A Prism file (attribution, analysis, project, dataset) cannot be read or written."""


class AnalysisError(PrismError):
    """SpRAy analysis failed."""


class EvaluationError(PrismError):
    """An evaluation (perturbation, randomisation, completeness) failed."""


class ViewerError(PrismError):
    """The viewer cannot start or serve a project."""


__all__ = [
    "PrismError",
    "InvalidArgumentError",
    "PrismFileNotFoundError",
    "ModelError",
    "AttributionError",
    "HeatmapError",
    "StoreError",
    "AnalysisError",
    "EvaluationError",
    "ViewerError",
]
