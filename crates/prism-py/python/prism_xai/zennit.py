"""Zennit's call shape, computed by Prism: for porting Zennit code with few edits.

Zennit::

    from zennit.attribution import Gradient
    from zennit.composites import EpsilonGammaBox
    with Gradient(model, EpsilonGammaBox(low=-3.0, high=3.0)) as attributor:
        output, relevance = attributor(x, torch.eye(1000)[y])

Prism::

    from prism_xai.zennit import Gradient
    with Gradient(model, "epsilon-gamma-box", low=-3.0, high=3.0) as attributor:
        output, relevance = attributor(x, torch.eye(1000)[y])

``model`` is a :class:`prism_xai.Model` or a ``torch.nn.Module`` (exported with
:func:`prism_xai.from_torch` at the first call, cached by its weights). The composite is a
name (``prism_xai.Model.explain``'s ``composite``) with its parameters as keyword arguments;
Prism applies the canonizers a composite needs itself (``canonize=False`` turns them off), so
Zennit's ``canonizers=[...]`` have no counterpart. The output gradient ``y`` must select one class
per sample: a one-hot array (Zennit's usual ``torch.eye(n)[target]``), the one-hot times the
output (``lambda out: out * one_hot``: Prism's ``seed_mode="logit"``), or a callable returning
either; anything else (several classes, soft weights) is refused with an error, because Prism
explains one class per sample. Inputs and results keep their type: torch tensors in, torch
tensors out; numpy in, numpy out. The computation is float64 for float64 inputs, else float32.

Written from Zennit's documented behaviour; no Zennit code is used.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Optional, Tuple

import numpy as np

from ._errors import InvalidArgumentError

__all__ = ["Attributor", "Gradient", "SmoothGrad", "IntegratedGradients", "Occlusion"]


def _kebab(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", name).lower()


def _composite_name(composite: Any) -> Optional[str]:
    if composite is None or isinstance(composite, str):
        return composite
    cls = type(composite).__name__
    raise InvalidArgumentError(
        f"prism_xai.zennit: the composite is a {cls} object; give Prism's name for it "
        f"(e.g. '{_kebab(cls)}') with its parameters as keyword arguments, e.g. "
        f"Gradient(model, 'epsilon-gamma-box', low=-3.0, high=3.0)"
    )


def _is_torch(x: Any) -> bool:
    return hasattr(x, "detach") and hasattr(x, "numpy") and hasattr(x, "requires_grad")


def _numpy(x: Any) -> np.ndarray:
    if _is_torch(x):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def seed_from_output_gradient(grad: np.ndarray, output: np.ndarray) -> Tuple[np.ndarray, str]:
    """The targets and seed mode that Zennit's output gradient ``grad`` stands for.

    ``grad`` ``[N, classes]`` must have one non-zero per row: 1 (one-hot: ``"one-hot"``) or the
    output's value there (``"logit"``). Anything else raises :class:`InvalidArgumentError`."""
    grad = np.asarray(grad)
    output = np.asarray(output)
    if grad.shape != output.shape:
        raise InvalidArgumentError(
            f"prism_xai.zennit: the output gradient has shape {grad.shape}, the model's output "
            f"{output.shape}; give a one-hot [N, classes] (e.g. torch.eye(classes)[y])"
        )
    flat = grad.reshape(grad.shape[0], -1) if grad.ndim > 1 else grad.reshape(1, -1)
    out = output.reshape(flat.shape)
    nonzero = flat != 0
    per_row = nonzero.sum(axis=1)
    bad = np.flatnonzero(per_row != 1)
    if bad.size:
        i = int(bad[0])
        raise InvalidArgumentError(
            f"prism_xai.zennit: the output gradient of sample {i} has {int(per_row[i])} non-zero "
            f"entries; Prism explains one class per sample: give a one-hot (torch.eye(n)[y]) or "
            f"a one-hot times the output"
        )
    targets = np.argmax(nonzero, axis=1).astype(np.int64)
    rows = np.arange(flat.shape[0])
    values = flat[rows, targets]
    if np.all(values == 1):
        return targets, "one-hot"
    if np.all(values == out[rows, targets]):
        return targets, "logit"
    raise InvalidArgumentError(
        "prism_xai.zennit: the output gradient's non-zero entries are neither 1 (one-hot) nor "
        "the output's values (one-hot times the output); Prism seeds relevance with one of these"
    )


class Attributor:
    """Base of the Zennit-shaped attributors: ``attributor(input, attr_output) -> (output,
    relevance)``, usable in a ``with`` block (as Zennit's; nothing is registered)."""

    _attributor = "gradient"

    def __init__(self, model: Any, composite: Optional[str] = None, attr_output: Any = None,
                 *, dtype: Optional[str] = None, batch_size: int = 16,
                 cache_dir: Any = None, **params: Any):
        self.model = model
        self.cache_dir = cache_dir
        self.composite = _composite_name(composite)
        self.attr_output = attr_output
        self.dtype = dtype
        self.batch_size = batch_size
        self.params = params
        self._prism_model = None

    def __enter__(self) -> "Attributor":
        return self

    def __exit__(self, exc_type, exc_value, traceback) -> bool:
        return False

    def _model(self, x: Any):
        from . import Model, from_torch

        if self._prism_model is None:
            if isinstance(self.model, Model):
                self._prism_model = self.model
            elif hasattr(self.model, "state_dict") and hasattr(self.model, "forward"):
                # looked up (or exported) at every call: the weights may have changed since
                return from_torch(self.model, x, cache_dir=self.cache_dir)
            else:
                raise InvalidArgumentError(
                    f"prism_xai.zennit: the model is a {type(self.model).__name__}; give a "
                    f"prism_xai.Model or a torch.nn.Module"
                )
        return self._prism_model

    def __call__(self, input: Any, attr_output: Any = None) -> Tuple[Any, Any]:
        """Computes ``(output, relevance)`` for ``input`` and the output gradient
        ``attr_output`` (or the one given at construction): a one-hot array, a one-hot times
        the output, or a callable of the output returning either."""
        grad_spec = self.attr_output if attr_output is None else attr_output
        if grad_spec is None:
            raise InvalidArgumentError(
                "prism_xai.zennit: no output gradient; give a one-hot y: attributor(x, y) with "
                "y = torch.eye(classes)[targets] (Zennit's default, the whole output, explains "
                "every class at once, which Prism does not)"
            )
        x = _numpy(input)
        dtype = self.dtype or ("float64" if x.dtype == np.float64 else "float32")
        model = self._model(input)
        output = model.predict(x, dtype=dtype, batch_size=self.batch_size)
        if callable(grad_spec):
            out_arg = _like(input, output)
            grad = _numpy(grad_spec(out_arg))
        else:
            grad = _numpy(grad_spec)
        targets, seed_mode = seed_from_output_gradient(grad, output)
        params = dict(self.params)
        if "seed_mode" in params and params["seed_mode"] != seed_mode:
            raise InvalidArgumentError(
                f"prism_xai.zennit: seed_mode={params['seed_mode']!r} contradicts the output "
                f"gradient, which is {seed_mode}"
            )
        params["seed_mode"] = seed_mode
        relevance = model.explain(
            x, targets, composite=self.composite, attributor=self._attributor, dtype=dtype,
            batch_size=self.batch_size, **params,
        )
        return _like(input, output), _like(input, relevance)


def _like(reference: Any, value: np.ndarray) -> Any:
    """``value`` as a torch tensor when ``reference`` is one (same device), else numpy."""
    if _is_torch(reference):
        import torch

        return torch.from_numpy(np.ascontiguousarray(value)).to(reference.device)
    return value


class Gradient(Attributor):
    """Zennit's ``Gradient`` attributor: with a composite, LRP.

    Parameters
    ----------
    model : prism_xai.Model or torch.nn.Module
    composite : str, optional
        A composite name (``prism_xai.Model.explain``'s ``composite``); None: the gradient.
    attr_output : array, tensor or callable, optional
        The default output gradient (see :meth:`Attributor.__call__`).
    dtype : {"float32", "float64"}, optional
        Default: float64 for float64 inputs, else float32.
    batch_size : int, optional
    cache_dir : str or os.PathLike, optional
        Where a torch module's export is cached (:func:`prism_xai.from_torch`).
    **params
        Rule parameters of ``prism_xai.Model.explain`` (``low``, ``high``, ``epsilon``,
        ``gamma``, ``canonize``, ...).
    """

    _attributor = "gradient"

    def __init__(self, model: Any, composite: Optional[str] = None, attr_output: Any = None,
                 create_graph: bool = False, retain_graph: Optional[bool] = None, **kwargs: Any):
        if create_graph or retain_graph:
            raise InvalidArgumentError(
                "prism_xai.zennit.Gradient: create_graph/retain_graph have no counterpart: Prism "
                "builds no autograd graph"
            )
        super().__init__(model, composite, attr_output, **kwargs)


class SmoothGrad(Attributor):
    """Zennit's ``SmoothGrad``: the mean attribution over ``n_iter`` noisy copies of the input
    (noise σ = ``noise_level`` × each sample's value range). Defaults are Zennit's."""

    _attributor = "smoothgrad"

    def __init__(self, model: Any, composite: Optional[str] = None, attr_output: Any = None,
                 noise_level: float = 0.1, n_iter: int = 20, **kwargs: Any):
        super().__init__(model, composite, attr_output, noise_level=noise_level, n_iter=n_iter,
                         **kwargs)


class IntegratedGradients(Attributor):
    """Zennit's ``IntegratedGradients`` with a constant baseline (``baseline``, default 0;
    Zennit's ``baseline_fn`` is not supported)."""

    _attributor = "integrated-gradients"

    def __init__(self, model: Any, composite: Optional[str] = None, attr_output: Any = None,
                 baseline_fn: Optional[Callable] = None, n_iter: int = 20, **kwargs: Any):
        if baseline_fn is not None:
            raise InvalidArgumentError(
                "prism_xai.zennit.IntegratedGradients: baseline_fn is not supported; give a "
                "constant baseline=... (default 0, Zennit's zeros_like)"
            )
        super().__init__(model, composite, attr_output, n_iter=n_iter, **kwargs)


class Occlusion(Attributor):
    """Zennit's ``Occlusion`` (the window is kept, the rest is zeroed, as Zennit's default
    ``occlude_independent``; ``invert_occlusion=True`` removes the window instead)."""

    _attributor = "occlusion"

    def __init__(self, model: Any, composite: Optional[str] = None, attr_output: Any = None,
                 occlusion_fn: Optional[Callable] = None, window: Any = 8, stride: Any = 8,
                 **kwargs: Any):
        if occlusion_fn is not None:
            raise InvalidArgumentError(
                "prism_xai.zennit.Occlusion: occlusion_fn is not supported (Prism zeroes outside "
                "the window; invert_occlusion=True zeroes the window)"
            )
        super().__init__(model, composite, attr_output, window=window, stride=stride, **kwargs)
