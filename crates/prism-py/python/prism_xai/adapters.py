"""Prism in other libraries' call shapes: Quantus' ``explain_func``.

(Zennit's ``with Gradient(model, composite) as attributor`` shape is :mod:`prism_xai.zennit`.)
Written from the libraries' documented behaviour (Quantus 0.6), sharing no code with them.
"""

from __future__ import annotations

from typing import Any, Dict, Sequence

import numpy as np

from ._errors import InvalidArgumentError

# Keyword arguments Quantus itself passes to every explain_func, or that its own `explain` takes,
# and which mean nothing to Prism (it runs the exported graph on the CPU). Anything else unknown
# is an error, never silently ignored.
_QUANTUS_IGNORED = ("device", "xai_lib", "xai_lib_kwargs")


def _as_model(model: Any, inputs: np.ndarray, cache_dir: Any):
    from . import Model, from_torch

    if isinstance(model, Model):
        return model
    # Quantus' ModelInterface wrappers (PyTorchModel) hold the user's model.
    if hasattr(model, "get_model") and not hasattr(model, "state_dict"):
        model = model.get_model()
    if isinstance(model, Model):
        return model
    if hasattr(model, "state_dict") and hasattr(model, "forward"):  # a torch.nn.Module
        return from_torch(model, inputs[:1], cache_dir=cache_dir)
    raise InvalidArgumentError(
        f"quantus_explain_func: the model is a {type(model).__name__}; give a prism_xai.Model or "
        f"a torch.nn.Module (exported with prism_xai.from_torch, cached by its weights)"
    )


def quantus_explain_func(model: Any, inputs: Any, targets: Any, **kwargs: Any) -> np.ndarray:
    """Prism as Quantus' ``explain_func``: ``(model, inputs, targets, **kwargs) -> np.ndarray``.

    Pass it to any Quantus metric as ``explain_func=prism_xai.quantus_explain_func`` with the
    method in ``explain_func_kwargs`` (``{"composite": "epsilon-plus-flat"}``).

    Parameters
    ----------
    model : torch.nn.Module, prism_xai.Model or a Quantus model wrapper
        A torch module is exported with :func:`prism_xai.from_torch` (cached by its weights, so
        a randomised copy, as in Quantus' randomisation metrics, gets its own export).
    inputs : np.ndarray
        The batch, channels first (``[N, C, H, W]``), as Quantus passes it for PyTorch models.
    targets : np.ndarray or int
        The class to explain per sample (``[N]`` integers), or one class for all.
    **kwargs
        ``composite``, ``composite_file``, ``attributor``, ``dtype``, ``batch_size``,
        ``attribute_at`` and the rule parameters of :meth:`prism_xai.Model.explain`;
        ``reduce_axes`` (default ``(1,)``: sum over channels, as Quantus' own Zennit path;
        ``()`` keeps the input's shape) and ``keepdims`` (default True); ``cache_dir`` for
        the export. Quantus' ``device`` is accepted and ignored (Prism computes on the CPU).

    Returns
    -------
    np.ndarray
        The relevance, ``[N, 1, H, W]`` by default (``[N, C, H, W]`` with ``reduce_axes=()``).

    Raises
    ------
    InvalidArgumentError
        Channel-last inputs, ``softmax=True`` (Prism explains the model's output as exported),
        reduction over the batch axis, or an unknown keyword argument.
    """
    options: Dict[str, Any] = dict(kwargs)
    for key in _QUANTUS_IGNORED:
        options.pop(key, None)
    reduce_axes: Sequence[int] = tuple(options.pop("reduce_axes", (1,)))
    keepdims = bool(options.pop("keepdims", True))
    channel_first = options.pop("channel_first", None)
    softmax = options.pop("softmax", None)
    cache_dir = options.pop("cache_dir", None)
    if channel_first is False:
        raise InvalidArgumentError(
            "quantus_explain_func: channel_first=False; Prism's adapter takes channel-first "
            "inputs [N, C, ...] (PyTorch's layout, the ONNX model's)"
        )
    if softmax:
        raise InvalidArgumentError(
            "quantus_explain_func: softmax=True is not supported: Prism explains the model's "
            "output as exported (add the softmax to the model if you want it explained)"
        )
    if any(int(a) == 0 for a in reduce_axes):
        raise InvalidArgumentError("quantus_explain_func: reduce_axes must not include axis 0")

    from . import _array

    x = _array(inputs, "inputs")
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
    t = targets
    if isinstance(t, (list, tuple)) or (isinstance(t, np.ndarray) and t.ndim == 1):
        t = np.asarray(t)
        if t.dtype.kind == "f":
            if not np.all(t == np.round(t)):
                raise InvalidArgumentError(
                    "quantus_explain_func: targets must be class indices (integers)"
                )
            t = t.astype(np.int64)
    elif isinstance(t, np.ndarray) and t.ndim == 0:
        t = int(t)
    m = _as_model(model, x, cache_dir)
    relevance = m.explain(x, t, **options)
    if reduce_axes and relevance.ndim >= 3:
        relevance = relevance.sum(axis=tuple(int(a) for a in reduce_axes), keepdims=keepdims)
    return np.asarray(relevance)
