"""``from_torch``: a PyTorch module as a Prism :class:`~prism_xai.Model`, through a cached ONNX
export. torch is imported here only (an optional dependency: ``pip install 'prism-xai[torch]'``).

Why the export is done this way (docs/python.md, "from_torch"):

* **BatchNorm stays a node.** An eval-mode export with constant folding fuses BatchNorm into the
  preceding convolution in float32; the fused weights differ from torch's in the last bits, and
  explaining the fused graph in float64 then drifts from Zennit on ``module.double()`` by far more
  than 1e-6. Kept as nodes, Prism merges BatchNorm itself (canonizer, in the compute precision),
  exactly as Zennit's canonizers do. The legacy exporter keeps them with
  ``training=TrainingMode.PRESERVE, do_constant_folding=False``; the dynamo exporter keeps them
  with ``optimize=False`` (its optimiser's rewrite rules fuse them: measured with torch 2.15 and
  onnxscript 0.7 on ResNet18 and VGG11-BN). The number of BatchNormalization nodes is checked
  after every export.
* **float32 weights.** Zennit's float64 reference is ``module.double()``: the float32 weights cast
  exactly. Prism computing in float64 (``dtype="float64"``) from a float32 file casts the same way,
  so a float32 export loses nothing. A float64 or half module is exported as a float32 copy when
  float32 holds every weight exactly; a float64 module whose weights float32 cannot hold is
  exported in float64 (Prism reads float64 initializers).
* **A dynamic batch dimension.** The example is repeated to a batch of 2 for the export when it
  has one sample (an exporter may otherwise specialise size 1), and the batch axis is symbolic.
* **Checked numbers.** After a new export, the graph is run by Prism in float64 on the example and
  compared with the module in float64; a graph that differs by more than 1e-6 (relative to the
  output's largest value) is refused (dynamo: the legacy exporter is tried instead).

Cache: ``<cache_dir>/<Class>-<key>.onnx``, where the key hashes every ``state_dict`` tensor's
bytes, dtype and shape, the module's class and ``repr`` (hyper-parameters such as strides that no
weight shape shows) and the source of its module classes, the example's shapes and dtypes, the
exporter, opset and input names, and the torch version. Files are written to a temporary name
and renamed, so a killed export never leaves a half file behind.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import hashlib
import inspect
import io
import logging
import os
import re
import shutil
import tempfile
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ._errors import InvalidArgumentError, ModelError

logger = logging.getLogger("prism_xai")

# Bump when the export procedure changes in a way that changes the file.
_CACHE_FORMAT = 1
_LEGACY_OPSET = 17
_VERIFY_RTOL = 1e-6


def _import_torch():
    try:
        import torch
    except ImportError as e:
        raise ImportError(
            "from_torch needs PyTorch (and onnx, onnxscript for its dynamo exporter): "
            "pip install 'prism-xai[torch]'"
        ) from e
    return torch


def default_cache_dir() -> str:
    """``$PRISM_CACHE`` if set, else ``~/.cache/prism-xai/onnx``."""
    env = os.environ.get("PRISM_CACHE")
    if env:
        return env
    return os.path.join(os.path.expanduser("~"), ".cache", "prism-xai", "onnx")


# ------------------------------------------------------------------------------------------------


def _example_tuple(torch, example_input) -> Tuple[Any, ...]:
    items = example_input if isinstance(example_input, (tuple, list)) else (example_input,)
    out = []
    for i, x in enumerate(items):
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(np.ascontiguousarray(x))
        if not isinstance(x, torch.Tensor):
            raise InvalidArgumentError(
                f"from_torch: example input {i} is a {type(x).__name__}; give a torch.Tensor or "
                f"numpy array (several inputs: a tuple of them)"
            )
        if x.dim() == 0:
            raise InvalidArgumentError(
                f"from_torch: example input {i} is a scalar; give a batch [N, ...]"
            )
        out.append(x.detach().cpu())
    if not out:
        raise InvalidArgumentError("from_torch: no example input")
    return tuple(out)


def _float_tensors(torch, module):
    for t in list(module.parameters()) + list(module.buffers()):
        if t.is_floating_point():
            yield t


def _export_dtype(torch, module):
    """float32 when float32 holds every weight exactly, else float64 (see the module doc)."""
    for t in _float_tensors(torch, module):
        if t.dtype in (torch.float32, torch.float16, torch.bfloat16):
            continue
        if t.dtype == torch.float64:
            d = t.detach().cpu()
            if not torch.equal(d.to(torch.float32).to(torch.float64), d):
                return torch.float64
            continue
        raise InvalidArgumentError(
            f"from_torch: the module holds {t.dtype} weights; Prism reads float16/32/64"
        )
    return torch.float32


def _cast_example(torch, xs, dtype):
    return tuple(x.to(dtype) if x.is_floating_point() else x for x in xs)


def _batch2(torch, xs):
    """A batch of 2 when the example has 1 sample (see the module doc)."""
    if all(x.shape[0] == 1 for x in xs):
        return tuple(torch.cat([x, x], 0) for x in xs)
    return xs


def _tensor_bytes(torch, t) -> memoryview:
    t = t.detach().cpu().contiguous().reshape(-1)
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    return memoryview(t.numpy()).cast("B")


def _class_source(cls) -> str:
    try:
        return inspect.getsource(cls)
    except (OSError, TypeError):
        return f"{cls.__module__}.{cls.__qualname__}"


def cache_key(torch, module, xs, exporter: str, opset, input_names, dtype=None) -> str:
    """The hash that names a module's export (see the module doc for what it covers)."""
    h = hashlib.blake2b(digest_size=20)

    def put(s: str) -> None:
        b = s.encode()
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)

    put(f"prism-xai onnx export v{_CACHE_FORMAT}")
    put(f"torch {torch.__version__}")
    put(f"exporter {exporter} opset {opset} inputs {list(input_names)}")
    cls = type(module)
    put(f"{cls.__module__}.{cls.__qualname__}")
    put(repr(module))
    for c in sorted({type(m) for m in module.modules()}, key=lambda c: (c.__module__, c.__qualname__)):
        if not c.__module__.startswith("torch."):
            put(_class_source(c))
    for x in xs:  # the batch dimension is dynamic: not part of the key
        put(f"input {tuple(x.shape[1:])} {x.dtype}")
    for name, t in module.state_dict().items():
        if not isinstance(t, torch.Tensor):
            put(f"{name} {t!r}")
            continue
        if dtype is not None and t.is_floating_point() and t.dtype != dtype:
            t = t.to(dtype)  # the exported copy's weights: a float64 module exact in float32 and
            # its float32 original share one export
        put(f"{name} {t.dtype} {tuple(t.shape)}")
        h.update(_tensor_bytes(torch, t))
    return h.hexdigest()


# ------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _eval_mode(module):
    """``module.eval()``, restoring every submodule's own training flag afterwards."""
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, flag in flags:
            m.training = flag


def _count_bn_modules(torch, module) -> int:
    return sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in module.modules())


def _count_bn_nodes(path: str) -> Optional[int]:
    try:
        import onnx
    except ImportError:
        return None
    model = onnx.load(path, load_external_data=False)
    count = 0

    def walk(graph):
        nonlocal count
        for node in graph.node:
            if node.op_type == "BatchNormalization":
                count += 1
            for a in node.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    walk(a.g)

    walk(model.graph)
    for f in model.functions:
        count += sum(n.op_type == "BatchNormalization" for n in f.node)
    return count


def _names(prefix: str, n: int, given: Optional[Sequence[str]]) -> List[str]:
    if given is not None:
        given = [str(g) for g in given]
        if len(given) != n:
            raise InvalidArgumentError(
                f"from_torch: {len(given)} input_names for {n} example inputs"
            )
        return given
    return [prefix] if n == 1 else [f"{prefix}_{i}" for i in range(n)]


def _outputs(torch, out) -> List[Any]:
    """The tensors of a forward's result (a tensor, a tuple/list, a dict or a ModelOutput)."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict) or hasattr(out, "to_tuple"):
        out = list(out.values()) if isinstance(out, dict) else list(out.to_tuple())
    if isinstance(out, (tuple, list)):
        flat = []
        for o in out:
            flat.extend(_outputs(torch, o))
        return flat
    return []


def _export_dynamo(torch, module, xs, path, opset, input_names, output_names):
    batch = getattr(torch.export.Dim, "DYNAMIC", None) or torch.export.Dim("batch")
    dynamic_shapes = tuple({0: batch} for _ in xs)
    # optimize=False: the exporter's optimiser fuses BatchNorm into the convolutions (onnxscript's
    # rewrite rules). Unoptimised, the graph carries some shape arithmetic (a zero bias built by
    # Shape/Expand for bias-free convolutions), which Prism folds away when it loads the model.
    kwargs = dict(dynamo=True, dynamic_shapes=dynamic_shapes, input_names=input_names,
                  output_names=output_names, external_data=True, optimize=False)
    if opset is not None:
        kwargs["opset_version"] = opset
    with _quiet(torch):
        torch.onnx.export(module, xs, path, **kwargs)


def _export_legacy(torch, module, xs, path, opset, input_names, output_names):
    axes = {n: {0: "batch"} for n in list(input_names) + list(output_names)}
    with _quiet(torch):
        torch.onnx.export(
            module, xs, path, dynamo=False, opset_version=opset or _LEGACY_OPSET,
            training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False,
            input_names=input_names, output_names=output_names, dynamic_axes=axes,
        )


@contextlib.contextmanager
def _quiet(torch):
    """The exporters print progress and warn a lot; send it to the logger at DEBUG instead."""
    out, err = io.StringIO(), io.StringIO()
    with warnings.catch_warnings(record=True) as caught, \
            contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for w in caught:
                if w.category.__name__ == "TracerWarning":
                    # The legacy exporter traced Python control flow or a Python value: the
                    # graph holds the example's branch and may not generalise. Say so.
                    logger.warning("from_torch (legacy exporter): %s", w.message)
                else:
                    logger.debug("torch.onnx.export: %s", w.message)
            for text in (out.getvalue(), err.getvalue()):
                if text.strip():
                    logger.debug("torch.onnx.export: %s", text.strip())


def _summary(e: BaseException) -> str:
    """An exporter's exception in one line: torch.export's errors run to dozens of lines of
    advice; keep the first line and the exception summary (the full text is logged at DEBUG)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return type(e).__name__
    summary = next((line for line in lines if line.startswith("<class ")), None)
    first = f"{type(e).__name__}: {lines[0]}"
    return f"{first} ({summary})" if summary else first


def _verify(torch, module, xs, model, dtype_name: str) -> Tuple[bool, str]:
    """Runs the module (float64 copy) and the graph (Prism, float64) on ``xs``; compares the
    first output."""
    ref_module = copy.deepcopy(module).double().eval()
    xs64 = tuple(x.double() if x.is_floating_point() else x for x in xs)
    with torch.no_grad():
        outs = _outputs(torch, ref_module(*xs64))
    if not outs:
        return True, "no tensor output to compare"
    ref = outs[0].detach().cpu().numpy()
    feed = xs64[0].numpy() if len(xs64) == 1 else {
        i["name"]: x.numpy() for i, x in zip(model.inputs, xs64)}
    got = model.predict(feed, dtype="float64")
    if got.shape != ref.shape:
        return False, f"the graph's output has shape {got.shape}, the module's {ref.shape}"
    scale = max(float(np.max(np.abs(ref))), 1e-30)
    diff = float(np.max(np.abs(got - ref))) / scale
    detail = f"max |Δ| / max |y| = {diff:.2e} in float64 (limit {_VERIFY_RTOL:g})"
    return diff <= _VERIFY_RTOL, detail


# The models loaded by this process, by file: a loop calling from_torch (Quantus' explain_func,
# the Zennit adapter) hashes the weights every time but loads each export once.
_LOADED: "collections.OrderedDict[str, Any]" = collections.OrderedDict()
_LOADED_MAX = 4


def _remember(path: str, model):
    _LOADED[path] = model
    _LOADED.move_to_end(path)
    while len(_LOADED) > _LOADED_MAX:
        _LOADED.popitem(last=False)
    return model


def from_torch(module, example_input, *, cache_dir=None, exporter="auto", opset=None,
               input_names=None, dynamo=None, verify=True):
    """See :func:`prism_xai.from_torch`."""
    torch = _import_torch()
    from . import Model  # the package's Model (not a circular import: called at run time)

    if dynamo is not None:
        exporter = "dynamo" if dynamo else "legacy"
    if exporter not in ("auto", "dynamo", "legacy"):
        raise InvalidArgumentError(
            f"from_torch: exporter={exporter!r}; give 'auto', 'dynamo' or 'legacy'"
        )
    if not isinstance(module, torch.nn.Module):
        raise InvalidArgumentError(
            f"from_torch: expected a torch.nn.Module, got a {type(module).__name__}"
        )
    xs = _example_tuple(torch, example_input)
    dtype = _export_dtype(torch, module)
    names = _names("input", len(xs), input_names)
    key = cache_key(torch, module, _cast_example(torch, xs, dtype), exporter, opset, names, dtype)
    cache_dir = os.fspath(cache_dir) if cache_dir is not None else default_cache_dir()
    path = os.path.join(cache_dir, f"{type(module).__name__}-{key}.onnx")
    if path in _LOADED:
        return _LOADED[path]
    if os.path.exists(path):
        logger.info("from_torch: cached export %s", path)
        return _remember(path, Model(path))
    os.makedirs(cache_dir, exist_ok=True)

    export_module = module
    if any(t.dtype != dtype for t in _float_tensors(torch, module)):
        export_module = copy.deepcopy(module).to(dtype)
    if dtype == torch.float64:
        logger.warning(
            "from_torch: the module's float64 weights are not all exact in float32; exporting in "
            "float64"
        )
    export_xs = _batch2(torch, _cast_example(torch, xs, dtype))
    n_bn = _count_bn_modules(torch, module)

    with _eval_mode(export_module), torch.no_grad():
        n_out = len(_outputs(torch, export_module(*export_xs)))
    out_names = _names("output", max(n_out, 1), None)

    order = {"auto": ["dynamo", "legacy"], "dynamo": ["dynamo"], "legacy": ["legacy"]}[exporter]
    failures = []
    for which in order:
        tmp = tempfile.mkdtemp(prefix=".export-", dir=cache_dir)
        try:
            tmp_path = os.path.join(tmp, os.path.basename(path))
            export = _export_dynamo if which == "dynamo" else _export_legacy
            try:
                with _eval_mode(export_module):
                    export(torch, export_module, export_xs, tmp_path, opset, names, out_names)
            except Exception as e:  # noqa: BLE001 - any exporter failure: try the next one
                failures.append(f"{which}: the export failed: {_summary(e)}")
                logger.info("from_torch: %s", failures[-1])
                logger.debug("from_torch: %s export failed", which, exc_info=True)
                continue
            n_nodes = _count_bn_nodes(tmp_path)
            if n_nodes is not None and n_nodes < n_bn:
                failures.append(
                    f"{which}: {n_bn - n_nodes} of {n_bn} BatchNorm layers were folded into "
                    f"other nodes (the float64 numbers would drift)"
                )
                logger.info("from_torch: %s", failures[-1])
                continue
            try:
                model = Model(tmp_path)
                if verify:
                    ok, detail = _verify(torch, export_module, export_xs, model, str(dtype))
                    if not ok:
                        failures.append(f"{which}: the graph does not compute the module: {detail}")
                        logger.info("from_torch: %s", failures[-1])
                        continue
                    logger.info("from_torch: %s export checked: %s", which, detail)
            except Exception as e:  # noqa: BLE001 - Prism cannot load/run it: try the next one
                failures.append(f"{which}: Prism cannot use the export: {type(e).__name__}: {e}")
                logger.info("from_torch: %s", failures[-1])
                continue
            del model
            # The data file first: the .onnx appearing is what marks the export complete.
            for f in sorted(os.listdir(tmp), key=lambda f: f.endswith(".onnx")):
                os.replace(os.path.join(tmp, f), os.path.join(cache_dir, f))
            logger.info("from_torch: exported %s with the %s exporter", path, which)
            return _remember(path, Model(path))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    raise ModelError(
        f"from_torch: no export of {type(module).__name__} is usable: " + "; ".join(failures)
    )
