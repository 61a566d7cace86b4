"""Type stubs of prism_xai's public API (the docstrings are the runtime ones; a test keeps them
equal: crates/prism-py/tests/test_python_layer.py)."""

import os
from typing import Any, Callable, Dict, List, Literal, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from . import adapters as adapters
from . import zennit as zennit
from ._errors import AnalysisError as AnalysisError
from ._errors import AttributionError as AttributionError
from ._errors import EvaluationError as EvaluationError
from ._errors import HeatmapError as HeatmapError
from ._errors import InvalidArgumentError as InvalidArgumentError
from ._errors import ModelError as ModelError
from ._errors import PrismError as PrismError
from ._errors import PrismFileNotFoundError as PrismFileNotFoundError
from ._errors import StoreError as StoreError
from ._errors import ViewerError as ViewerError
from ._prism import AnalysisFile, AttributionFile
from ._prism import __version__ as __version__
from ._prism import get_num_threads as get_num_threads
from ._prism import set_num_threads as set_num_threads

PathLike = Union[str, os.PathLike[str]]
DType = Literal["float32", "float64"]
Target = Union[Literal["predicted"], int, Sequence[int], np.ndarray]
Progress = Union[bool, Callable[[Dict[str, Any]], None]]

METHOD_KEYS: Tuple[str, ...]
"""The keys of an attribution method (``prism explain``'s method flags in snake case)."""
RULE_PARAM_KEYS: Tuple[str, ...]
"""``METHOD_KEYS`` without composite, composite_file and attributor: ``explain``'s
``**rule_params``."""


class Model:
    """An ONNX model loaded by Prism: run it (:meth:`predict`) and explain it (:meth:`explain`).

    Parameters
    ----------
    path : str or os.PathLike
        The ``.onnx`` file (external data files next to it are read too).
    allow_nonfinite : bool, default False
        Accept inputs holding NaN or ±Inf and non-finite results. By default a non-finite input
        is a ``ValueError`` naming the samples, and a non-finite output or relevance computed
        from finite inputs a ``ModelError`` naming the node where it first appeared.

    Raises
    ------
    PrismFileNotFoundError
        The file does not exist.
    ModelError
        The file is not a model Prism can load (an unsupported operator is named with its node).
    """

    def __init__(self, path: PathLike, *, allow_nonfinite: bool = False): ...

    @property
    def path(self) -> str:
        """The model file."""
        ...

    @property
    def allow_nonfinite(self) -> bool:
        """Whether NaN and ±Inf in inputs and results are accepted."""
        ...

    @property
    def inputs(self) -> List[Dict[str, Any]]:
        """The graph inputs: ``[{"name", "shape", "dtype"}]``; symbolic dimensions are strings."""
        ...

    @property
    def outputs(self) -> List[Dict[str, Any]]:
        """The graph outputs: ``[{"name", "shape"}]``."""
        ...

    def __fspath__(self) -> str: ...

    def predict(self, x: Any, *, dtype: DType = "float32", batch_size: int = 16) -> np.ndarray:
        """Runs the model: its first output (a classifier's logits) for every sample.

        Parameters
        ----------
        x : np.ndarray or dict of str to np.ndarray
            The input batch ``[N, ...]`` (one array for a single-input model), or one array per
            input name. Any float dtype and any memory layout (C, Fortran, strided) is accepted
            and read with one copy at most; integer inputs (token ids, masks) take integer
            arrays. Torch tensors are accepted too (detached, moved to the CPU).
        dtype : {"float32", "float64"}, optional
            The precision Prism computes in (float64 from the file's float32 weights: exact
            parity with a ``.double()`` torch model). Default "float32".
        batch_size : int, optional
            Samples per forward pass (memory versus speed). Default 16.

        Returns
        -------
        np.ndarray
            ``[N, ...]`` in ``dtype``.

        Raises
        ------
        InvalidArgumentError
            A wrong shape, dtype, input name or a NaN in the input.
        ModelError
            The model cannot run on these inputs.
        KeyboardInterrupt
            Ctrl-C (checked between batches).
        """
        ...

    def explain(
        self,
        x: Any,
        target: Target = "predicted",
        *,
        composite: Optional[str] = None,
        composite_file: Optional[PathLike] = None,
        attributor: str = "gradient",
        dtype: DType = "float32",
        batch_size: int = 16,
        attribute_at: Optional[str] = None,
        reduce_hidden: str = "none",
        **rule_params: Any,
    ) -> np.ndarray:
        """Explains the model's decision for every sample: the relevance of each input value.

        The same computation as ``prism explain`` with the same parameters (bit-identical).

        Parameters
        ----------
        x : np.ndarray or dict of str to np.ndarray
            The input batch, as for :meth:`predict`.
        target : "predicted", int, str or array of int, optional
            The class to explain: the predicted one (default), one class for every sample, or
            one class per sample (``[N]`` integers). For outputs with a position axis
            (``[N, positions, classes]``, a language model's logits) also the position:
            "last" (the predicted next token after the last position), "last:K", "POS:K",
            "POS:predicted" (POS negative from the end), or ``[N, 2]`` (position, class) rows.
        composite : str, optional
            A built-in LRP composite, Zennit's names: "epsilon-gamma-box", "epsilon-plus",
            "epsilon-plus-flat", "epsilon-alpha2-beta1", "epsilon-alpha2-beta1-flat",
            "excitation-backprop", "guided-backprop", "deconvnet", "beta-smooth"
            (snake case accepted); for transformers "attn-lrp" (AttnLRP) and "cp-lrp"
            (CP-LRP), as LXT computes them (ε 0 unless ``epsilon`` is given), and
            "attn-lrp:epsilon-gamma-box" to give a convolutional stem a CNN composite's rules.
            Without one (and without ``composite_file``): plain gradients.
        composite_file : str or os.PathLike, optional
            Your own composite as a TOML file (docs/composites.md). Not with ``composite``.
        attributor : str, optional
            "gradient" (default; with a composite this is LRP), "smoothgrad",
            "integrated-gradients" or "occlusion"; or a class activation map
            (pytorch-grad-cam 1.5's definitions): "grad-cam", "grad-cam-plus-plus",
            "xgrad-cam", "layer-cam", "eigen-cam", "score-cam", "ablation-cam", at ``layer``
            (an ONNX node or tensor name; default: the deepest convolution), returned as
            ``[N, 1, H, W]`` in [0, 1].
        dtype : {"float32", "float64"}, optional
            The precision of the computation; default "float32". Zennit parity to 1e-6 holds
            in float64.
        batch_size : int, optional
            Samples per pass; default 16.
        attribute_at : str, optional
            The name of the tensor to attribute to instead of the input (``prism inspect
            --shapes`` lists them); token models default to the embedding lookup.
        reduce_hidden : {"none", "sum"}, optional
            A token model's relevance at its embedding lookup: "none" (default) keeps
            ``[N, tokens, hidden]``, "sum" sums over the hidden dimension.
        **rule_params
            Every other parameter of ``prism explain``, same names in snake case:
            ``seed_mode`` ("one-hot" or "logit"), ``canonize`` (bool, default True;
            ``no_canonize=True`` is accepted too), ``zero_bias``, ``epsilon``, ``stabilizer``,
            ``gamma``, ``alpha``, ``beta``, ``low``, ``high`` (a float or one per channel; the
            ZBox bounds of epsilon-gamma-box), ``beta_smooth``, ``n_iter``, ``noise_level``,
            ``baseline``, ``window``, ``stride`` (int or one per trailing dimension),
            ``invert_occlusion``, ``seed``, ``layer``. Defaults are Zennit's.

        Returns
        -------
        np.ndarray
            The relevance in ``dtype``: the input's shape for image models, ``[N, tokens,
            hidden]`` for token models (``[N, tokens]`` with ``reduce_hidden="sum"``), the
            tensor's shape with ``attribute_at``.

        Raises
        ------
        InvalidArgumentError
            An unknown parameter (the message lists the valid ones), a bad value or shape.
        AttributionError
            The method cannot run on this model.
        KeyboardInterrupt
            Ctrl-C (checked between batches).

        Examples
        --------
        >>> model = prism_xai.Model("vgg16.onnx")
        >>> R = model.explain(x, composite="epsilon-gamma-box", low=-2.12, high=2.64)
        >>> prism_xai.heatmap(R, cmap="coldnhot", symmetric=True)
        """
        ...

    def explain_concepts(
        self,
        x: Any,
        target: Any = "predicted",
        *,
        conditions: Sequence[str] = (),
        record: Sequence[str] = (),
        record_mode: str = "channels",
        exclude_parallel: bool = False,
        top_k: int = 10,
        composite: Optional[str] = None,
        composite_file: Optional[PathLike] = None,
        dtype: str = "float32",
        batch_size: int = 16,
        attribute_at: Optional[str] = None,
        **rule_params: Any,
    ) -> Dict[str, Any]:
        """Concept-level explanations: relevance recorded at hidden nodes, and Concept Relevance
        Propagation (relevance conditioned on channels of hidden layers, as zennit-crp).

        The same computation as ``prism explain --record … --condition …`` (docs/concepts.md).

        Parameters
        ----------
        x, target, composite, composite_file, dtype, batch_size, attribute_at, **rule_params
            As for :meth:`explain` (a gradient-based method: the gradient or an LRP composite).
            With ``conditions``, ``seed_mode`` defaults to "logit" (zennit-crp's initial
            relevance).
        conditions : sequence of str, optional
            CRP conditions, each ``"LAYER:ch,ch"`` (ONNX node names as ``prism inspect
            --shapes`` prints them; channels or ranges ``a-b``; several layers separated by
            ``;``). With K conditions every sample gives K rows, row ``n*K + k``.
        record : sequence of str, optional
            Node-name globs (``*`` matches any characters, ``/`` included) whose output's
            relevance and activation to keep.
        record_mode : {"channels", "maps"}, optional
            Recorded tensors summed over space (``[rows, C]``, default) or whole.
        exclude_parallel : bool, optional
            Drop relevance that reaches a conditioned layer's inputs around the layer (a skip
            connection): zennit-crp's ``CondAttribution`` default. Default False: such paths
            carry their relevance on unconditioned (zennit-crp's ``FeatureVisualization``).
        top_k : int, optional
            Channels per row in the top tables; default 10.

        Returns
        -------
        dict
            ``relevance`` (rows x input shape), ``targets`` (int64 per row),
            ``rows_per_sample`` (K, 1 without conditions) and ``recorded``: node name ->
            dict of ``tensor``, ``sample_shape``, ``relevance``, ``activation``,
            ``top_channels`` (int64 ``[rows, k]``, most relevant first) and ``top_share``
            (their shares of the absolute total).

        Raises
        ------
        InvalidArgumentError
            A malformed condition, a layer or channel that does not exist (the message gives
            the valid range), a record pattern that matches no node, a method that is not
            gradient-based, an unknown parameter or value.
        AttributionError
            The method cannot run on this model.

        Examples
        --------
        >>> out = model.explain_concepts(x, 3, composite="epsilon-plus-flat",
        ...                              conditions=["/features/features.28/Conv:12"],
        ...                              record=["/features/features.28/Conv"])
        >>> out["recorded"]["/features/features.28/Conv"]["top_channels"][0]
        """
        ...

    def rules(
        self,
        x: Any,
        *,
        composite: Optional[str] = None,
        composite_file: Optional[PathLike] = None,
        **rule_params: Any,
    ) -> List[Tuple[str, str, str]]:
        """The rule each node of the (canonized) graph gets under a composite.

        Parameters
        ----------
        x : np.ndarray, dict, or a shape
            An input batch (as for :meth:`predict`), or its shape (a list of ints, or a dict
            input name -> shape).
        composite, composite_file, **rule_params
            As for :meth:`explain`.

        Returns
        -------
        list of (str, str, str)
            ``(node name, operator, rule)`` per node, in graph order.
        """
        ...


def from_torch(
    module: Any,
    example_input: Any,
    *,
    cache_dir: Optional[PathLike] = None,
    exporter: Literal["auto", "dynamo", "legacy"] = "auto",
    opset: Optional[int] = None,
    input_names: Optional[Sequence[str]] = None,
    dynamo: Optional[bool] = None,
    verify: bool = True,
) -> Model:
    """Exports a PyTorch module to ONNX (into a cache keyed by its weights) and loads it.

    torch (and onnx, onnxscript for the dynamo exporter) are needed only here:
    ``pip install 'prism-xai[torch]'``. The module is exported in eval mode (its training flags
    are restored afterwards), in float32 (a float32 copy when its weights are float64 or half
    and float32 holds them exactly), with a dynamic batch dimension and BatchNorm kept as
    nodes, so that ``explain(..., dtype="float64")`` matches Zennit on ``module.double()``
    to 1e-6. See docs/python.md, "from_torch".

    Parameters
    ----------
    module : torch.nn.Module
        The model. It is not modified.
    example_input : torch.Tensor, np.ndarray, or a tuple of them
        An input batch (several inputs: a tuple, in ``forward``'s order). Its batch size does
        not matter: the exported batch dimension is dynamic.
    cache_dir : str or os.PathLike, optional
        Where exports are kept; default ``$PRISM_CACHE`` or ``~/.cache/prism-xai/onnx``.
    exporter : {"auto", "dynamo", "legacy"}, optional
        "auto" (default): the dynamo exporter, and the legacy (TorchScript) one if dynamo
        fails, folds BatchNorm away or its graph does not compute the module's numbers.
    opset : int, optional
        The ONNX opset; default: the exporter's (dynamo) or 17 (legacy).
    input_names : sequence of str, optional
        Names of the graph inputs; default "input" (or "input_0", "input_1", ...).
    dynamo : bool, optional
        Shorthand: True is ``exporter="dynamo"``, False ``exporter="legacy"``.
    verify : bool, optional
        After a new export, run the module (float64 copy) and the ONNX graph (Prism, float64)
        on the example and refuse a graph whose output differs by more than 1e-6 relative.
        Default True.

    Returns
    -------
    Model

    Raises
    ------
    ImportError
        torch is not installed.
    ModelError
        No exporter produced a graph Prism loads with the module's numbers (the message
        gives each exporter's failure).
    """
    ...


class Heatmap(np.ndarray):
    """A heatmap image: ``np.uint8``, ``[H, W, 3]`` (one sample) or ``[N, H, W, 3]`` (a batch).

    It is a plain numpy array with a ``_repr_png_``, so Jupyter displays it inline (a batch as a
    grid). :meth:`save` writes it as PNG."""

    def __new__(cls, image: Any) -> "Heatmap": ...

    def png(self) -> bytes:
        """The PNG file's bytes (a batch as one grid image)."""
        ...

    def _repr_png_(self) -> Optional[bytes]: ...

    def save(self, path: PathLike) -> None:
        """Writes the heatmap as a PNG file (a batch as one grid image)."""
        ...


def heatmap(
    relevance: Any,
    *,
    cmap: str = "bwr",
    level: float = 1.0,
    symmetric: bool = False,
    absolute: bool = False,
    vmin: Optional[float] = None,
    vmax: Optional[float] = None,
    channels: str = "sum",
    overlay: Any = None,
    alpha: Optional[float] = None,
) -> Heatmap:
    """Renders relevance as heatmap images, pixel-identical to ``prism heatmap`` (and Zennit's
    ``imgify``).

    Parameters
    ----------
    relevance : np.ndarray
        ``[N, C, H, W]`` (channels reduced by ``channels``), ``[N, H, W]`` or one ``[H, W]``.
    cmap : str, optional
        A colour map name (:func:`colormaps`) or a CMSL string such as
        ``"70:0d0,70:ddd,90:ddd,90:d0d"``; default "bwr".
    level : float, optional
        Gamma-like contrast level (Zennit's ``level``); default 1.0.
    symmetric : bool, optional
        Normalise symmetrically around zero (use with diverging maps); default False.
    absolute : bool, optional
        Render ``|R|``; default False.
    vmin, vmax : float, optional
        Fixed normalisation bounds instead of each sample's own.
    channels : str, optional
        How channels are combined (as ``prism heatmap --channels``): "sum" (default),
        "abs-sum", or "none" (keep 1 or 3 channels; 3 give an RGB image, as Zennit's
        ``imgify``).
    overlay : np.ndarray, optional
        The inputs (``[N, C, H, W]`` with 1 or 3 channels, or ``[N, H, W]``) to blend each
        heatmap onto, in grayscale (rescaled from each sample's [min, max]; ViRelAy's overlay
        mode, as ``prism heatmap --overlay``).
    alpha : float, optional
        The heatmap's opacity where ``|R|`` is largest; default: ``prism heatmap``'s
        ``--overlay-alpha`` (0.9).

    Returns
    -------
    Heatmap
        ``uint8 [H, W, 3]`` for a 2-D ``relevance``, else ``uint8 [N, H, W, 3]``. Jupyter
        shows it inline (a batch as a grid); ``.save(path)`` writes a PNG.

    Raises
    ------
    HeatmapError
        An unknown colour map or a bad CMSL string.
    InvalidArgumentError
        A bad shape.
    """
    ...


def grid(images: Any, shape: Optional[Tuple[int, int]] = None) -> Heatmap:
    """Tiles images into one image (as ``prism heatmap --grid``).

    Parameters
    ----------
    images : Heatmap, np.ndarray or list of np.ndarray
        ``uint8`` images: a batch ``[N, H, W, 3]`` (e.g. :func:`heatmap`'s result) or a list
        of ``[H, W, 3]`` / ``[H, W]`` images of one size.
    shape : (int, int), optional
        ``(rows, columns)``; default: ⌊√N⌋ columns (Zennit's default; ``prism heatmap
        --grid``).

    Returns
    -------
    Heatmap
        ``uint8 [H', W', 3]``.
    """
    ...


def colormaps() -> List[str]:
    """The built-in colour map names (any CMSL string is accepted too; see docs/heatmaps.md)."""
    ...


def attribute(
    model: Any,
    dataset: PathLike,
    output: PathLike,
    *,
    method: Optional[Mapping[str, Any]] = None,
    record: Union[str, Sequence[str]] = (),
    record_mode: Optional[str] = None,
    top_k: Optional[int] = None,
    progress: Progress = True,
    **options: Any,
) -> Dict[str, Any]:
    """Attributes a whole dataset into an attribution file, as ``prism attribute``.

    Streaming, resumable (run it again after a kill or Ctrl-C: it continues where it stopped)
    and shardable (``shard="I/N"``).

    Parameters
    ----------
    model : Model, str or os.PathLike
        The model (a :class:`Model` or the ONNX file).
    dataset : str or os.PathLike
        An HDF5 dataset, an image folder or a ``.npy`` file (docs/datasets.md).
    output : str or os.PathLike
        The attribution file (``.h5``) to write.
    method : dict, optional
        The attribution method as a dict of :data:`METHOD_KEYS`; the same keys may be given as
        keyword arguments instead (``composite="epsilon-plus-flat"``, ``gamma=0.5``).
    record : str or sequence of str, optional
        Node-name globs (``*`` matches any characters, ``/`` included) whose output's relevance
        and activation to record into the file's ``/record`` group, as ``prism attribute
        --record`` (docs/concepts.md, docs/formats.md): the values of
        :meth:`Model.explain_concepts` for the same samples and batch size. A gradient-based
        method only.
    record_mode : {"channels", "maps"}, optional
        Recorded tensors summed over space (``[N, C]``, default) or whole; needs ``record``.
    top_k : int, optional
        Channels per sample in the top tables (default 10); needs ``record``.
    progress : bool or callable, optional
        True (default): a progress bar (tqdm if installed, in notebooks and terminals) or
        ``logging`` lines on the "prism_xai" logger; False: nothing; a callable: called with
        every progress event (a dict) instead.
    **options
        Every other ``prism attribute`` option in snake case: ``target`` ("label",
        "predicted" or an int), ``batch_size``, ``shard``, ``limit``, ``compression``,
        ``prefetch``, ``force``, ``allow_nonfinite``, ``dataset_kind``, ``labels``, ``resize``,
        ``crop``, ``normalize``, ``channels``, ``scale``.

    Returns
    -------
    dict
        ``{"status": "written" | "complete" | ..., "output": str, "samples": int, ...}``.

    Raises
    ------
    KeyboardInterrupt
        Ctrl-C: the job stops after the current part; what is written stays and a new call
        resumes.
    InvalidArgumentError
        Among others: a record pattern that matches no node, a method that is not
        gradient-based with ``record``.
    StoreError, AttributionError
    """
    ...


def concepts(
    model: Any,
    dataset: PathLike,
    output: PathLike,
    *,
    layers: Union[str, Sequence[str]],
    method: Optional[Mapping[str, Any]] = None,
    target: Union[str, int] = "label",
    top_n: int = 40,
    crops: int = 0,
    sample_heatmaps: int = 0,
    batch_size: int = 16,
    shard: Optional[str] = None,
    limit: Optional[int] = None,
    prefetch: int = 2,
    force: bool = False,
    allow_nonfinite: bool = False,
    progress: Progress = True,
    **options: Any,
) -> Dict[str, Any]:
    """Finds each concept's reference samples over a dataset, as ``prism concepts``.

    For every channel ("concept") of the chosen layers: the samples that make it most relevant
    (relevance maximisation) and most active (activation maximisation), with receptive-field
    crops, as zennit-crp's ``FeatureVisualization``; each sample's channel relevance and
    activation; optionally each sample's conditional heatmaps (docs/concepts.md). Resumable and
    shardable like :func:`attribute`; :func:`read_concepts` reads the file.

    Parameters
    ----------
    model : Model, str or os.PathLike
        The model (a :class:`Model` or the ONNX file).
    dataset : str or os.PathLike
        An HDF5 dataset, an image folder or a ``.npy`` file (docs/datasets.md).
    output : str or os.PathLike
        The concepts file (``.h5``) to write; ``{shard}`` is replaced for a shard.
    layers : str or sequence of str
        Node names as ``prism inspect --shapes`` prints them, or globs (``*`` matches any
        characters, ``/`` included), e.g. ``"/features/*/Conv"``. Their outputs need a channel
        axis.
    method : dict, optional
        The attribution method as a dict of :data:`METHOD_KEYS` (or the same keys as keyword
        arguments); the composite is "epsilon-plus-flat" when none is named.
    target : str or int, optional
        "label" (default: the dataset's labels), "predicted" or a class number.
    top_n : int, optional
        Reference samples kept per channel and mode (default 40, as zennit-crp).
    crops : int, optional
        Receptive-field crops per channel and mode (the best ``crops`` references, at most
        ``top_n``; each a forward and backward pass of its own); default 0: none.
    sample_heatmaps : int, optional
        Conditional heatmaps stored per sample and layer, of its most relevant channels
        (default 0: none).
    batch_size : int, optional
        Samples per batch (default 16; also the unit of resumption).
    shard : str, optional
        ``"I/N"``: process shard I of N (0-based); ``prism merge`` joins the shards.
    limit : int, optional
        Only the first ``limit`` samples of the dataset (before sharding).
    prefetch : int, optional
        Batches decoded ahead of the model (default 2).
    force : bool, optional
        Start over: discard an interrupted run and overwrite an existing output.
    allow_nonfinite : bool, optional
        Accept samples holding NaN or ±Inf (refused by default).
    progress : bool or callable, optional
        As for :func:`attribute`; besides ``"started"`` and ``"part"``, the events
        ``{"event": "computed"}`` and ``{"event": "step", "what": ...}`` (each layer's
        selection and crops).
    **options
        The method's keys (``composite="epsilon-gamma-box"``, ``gamma=0.5``) and the dataset
        options of :func:`attribute`: ``dataset_kind``, ``labels``, ``resize``, ``crop``,
        ``normalize``, ``channels``, ``scale``.

    Returns
    -------
    dict
        ``{"status": "written" | "complete" | "stopped", "output": str, "samples": int,
        "layers": [node names], "method": str}`` (and ``"shard": (I, N)`` for a shard).

    Raises
    ------
    KeyboardInterrupt
        Ctrl-C: the job stops after the current part (during the selection and crops: when
        they end); a new call resumes.
    InvalidArgumentError
        Among others: a layer glob that matches no node, ``crops`` above ``top_n``.
    StoreError, AttributionError
    """
    ...


def tcav(
    model: Any,
    layer: str,
    target: int,
    concepts: Union[Mapping[str, PathLike], Sequence[Any]],
    randoms: Union[Mapping[str, PathLike], Sequence[Any]],
    inputs: PathLike,
    *,
    output: Optional[PathLike] = None,
    plot: Optional[PathLike] = None,
    seed: int = 0,
    dtype: str = "f32",
    alpha: float = 0.05,
    l2: float = 0.01,
    test_fraction: float = 0.33,
    batch_size: int = 32,
    allow_nonfinite: bool = False,
    **options: Any,
) -> Dict[str, Any]:
    """Tests concepts with concept activation vectors (TCAV), as ``prism tcav``.

    For each concept and random set, a CAV is the unit normal of an L2-regularised logistic
    regression telling the concept's activations at ``layer`` from the random set's (seeded
    33% held-out split for its accuracy). The TCAV score is the share of ``inputs`` whose
    ``target`` logit grows along the CAV (Captum's ``sign_count``); ``magnitude`` is the mean
    directional derivative. A concept's scores over the random sets are t-tested against the
    random baseline's (random set i against i+1), Bonferroni-corrected over the concepts
    (docs/tcav.md).

    Parameters
    ----------
    model : Model, str or os.PathLike
        The model (a :class:`Model` or the ONNX file).
    layer : str
        An ONNX node (its first output) or tensor name, as ``prism inspect --shapes`` prints.
    target : int
        The class whose output is differentiated.
    concepts : dict or sequence
        ``{name: path}``, or ``(name, path)`` pairs: each a dataset (image folder
        ``ROOT/<sub-folder>/<image>.png``, ``.h5`` or ``.npy``; labels ignored).
    randoms : dict or sequence
        The random sets, as ``concepts`` or bare paths (named after their last component); at
        least 2 (the TCAV paper uses 10 or more).
    inputs : str or os.PathLike
        The samples of the target class.
    output : str or os.PathLike, optional
        Also write the report there as JSON.
    plot : str or os.PathLike, optional
        Also draw the bar chart there (PNG); needs ``output``.
    seed : int, optional
        Seed of the CAVs' train/test splits (default 0).
    dtype : str, optional
        "f32" (default) or "f64": the type of the model's passes.
    alpha : float, optional
        Significance level before the Bonferroni correction (default 0.05).
    l2 : float, optional
        L2 penalty of the CAV classifier (default 0.01).
    test_fraction : float, optional
        Share of each CAV's examples held out (default 0.33).
    batch_size : int, optional
        Samples per pass (default 32).
    allow_nonfinite : bool, optional
        Accept samples holding NaN or ±Inf (refused by default).
    **options
        The dataset options of :func:`attribute`, applied to every set: ``dataset_kind``,
        ``resize``, ``crop``, ``normalize``, ``channels``, ``scale``.

    Returns
    -------
    dict
        The report (the JSON of ``prism tcav``): ``concepts`` (per concept its ``runs``,
        ``sign_count``/``magnitude``/``cav_accuracy`` mean and std, ``test`` with
        ``p_value`` and ``significant``), ``random_baseline``, ``alpha_corrected``,
        ``warnings``, and the settings.

    Raises
    ------
    InvalidArgumentError
        An unknown layer or class, fewer than 2 random sets, a name used twice, sets of
        different sample shapes.
    StoreError, PrismFileNotFoundError
        A set that cannot be read.
    """

def analyze(
    attribution: PathLike,
    output: PathLike,
    *,
    progress: Progress = True,
    **options: Any,
) -> Dict[str, Any]:
    """SpRAy on an attribution file, per class, into an analysis file, as ``prism analyze``.

    Parameters
    ----------
    attribution : str or os.PathLike
        An attribution file (:func:`attribute`'s output).
    output : str or os.PathLike
        The analysis file to write.
    progress : bool or callable, optional
        As for :func:`attribute`.
    **options
        Every ``prism analyze`` option in snake case (``config``, ``force``, ``classes``,
        ``label_map``, ``cache_dir``, ``no_cache``, the pipeline's parameters; see
        docs/analysis.md).

    Returns
    -------
    dict
        A summary of what was written.
    """
    ...


def project(
    dataset: PathLike,
    attributions: Union[PathLike, Sequence[PathLike]],
    output: PathLike,
    *,
    analyses: Union[PathLike, Sequence[PathLike]] = (),
    **options: Any,
) -> Dict[str, Any]:
    """Writes a ViRelAy project file over a dataset, attributions and analyses, as ``prism
    project``.

    Parameters
    ----------
    dataset : str or os.PathLike
        The dataset the attributions were made from.
    attributions : path or list of paths
        Attribution files.
    output : str or os.PathLike
        The project file (``.yaml``).
    analyses : path or list of paths, optional
        Analysis files.
    **options
        Every other ``prism project`` option in snake case (``label_map``, ``name``,
        ``model_name``, ``analysis_method``, ``force``, the dataset options).

    Returns
    -------
    dict
        A summary of what was written.
    """
    ...


def evaluate(
    model: Any,
    inputs: Any,
    output_dir: PathLike,
    *,
    methods: Sequence[str],
    progress: Progress = True,
    **options: Any,
) -> Dict[str, Any]:
    """Evaluates attribution methods, as ``prism evaluate``: region perturbation (MoRF/LeRF
    AOPC), model-randomisation sanity checks, completeness; a JSON report and plots.

    Parameters
    ----------
    model : Model, str or os.PathLike
    inputs : np.ndarray, dict or path
        The input batch, or a ``.npy`` file.
    output_dir : str or os.PathLike
        Where the report and plots go.
    methods : list of str
        The methods to compare (``prism evaluate --methods``' names).
    progress : bool or callable, optional
        As for :func:`attribute`.
    **options
        Every other ``prism evaluate`` option in snake case (docs/evaluation.md).

    Returns
    -------
    dict
        The report.
    """
    ...


def read_attribution(path: PathLike) -> AttributionFile:
    """Opens an attribution file for reading, lazily (nothing is read until asked).

    Returns
    -------
    AttributionFile
        ``len(f)``, ``f.shape``, ``f.labels`` (int64), ``f.classes()``,
        ``f.indices(class_=c)``, ``f.read(indices=None, class_=None)`` (an ``np.ndarray``),
        ``f.method`` (the method's description).
    """
    ...


def read_analysis(path: PathLike) -> AnalysisFile:
    """Opens an analysis file for reading, lazily.

    Returns
    -------
    AnalysisFile
        ``a.categories()`` (a list of names), ``a.category(name)``: a dict of arrays
        (``"index"``, the embeddings and the clusterings by name).
    """
    ...


def read_concepts(path: PathLike) -> Dict[str, Any]:
    """Reads a concepts file (:func:`concepts`' output, or ``prism concepts``').

    Returns
    -------
    dict
        ``"index"`` (int64 ``[N]``: the dataset sample of each row), ``"target"`` (int64
        ``[N]``: the class explained), ``"prediction"`` (float32 ``[N, classes]``) and
        ``"layers"``: one dict per layer, in graph order, with ``"node"``, ``"tensor"``,
        ``"shape"`` (one sample's output shape), ``"relevance"`` and ``"activation"``
        (float32 ``[N, C]``: summed over space), ``"relevance_location"`` and
        ``"activation_location"`` (int64 ``[N, C]``: the flat position of each map's
        maximum), ``"relmax"`` and ``"actmax"`` (dicts of ``"sample"`` int64 ``[K, C]``,
        -1 where the run has fewer than K rows; ``"score"`` float32 ``[K, C]``;
        ``"location"`` int64 ``[K, C]``; ``"box"`` int32 ``[K, C, 4]``: y0, y1, x0, x1 of
        the crop, end exclusive; ``"crops"``: boxes computed per channel), and with
        ``sample_heatmaps`` M > 0 ``"heatmap"`` (float32 ``[N, M, H, W]``) and
        ``"heatmap_channel"`` (int32 ``[N, M]``). Layout: docs/formats.md.

    Raises
    ------
    StoreError
        Not a complete concepts file.
    """
    ...


def serve(
    project: Union[PathLike, Sequence[PathLike]],
    port: int = 8080,
    host: str = "127.0.0.1",
    *,
    cache_mib: int = 256,
    allow_remote: bool = False,
    allowed_hosts: Sequence[str] = (),
    token: Union[bool, str, None] = None,
) -> str:
    """Starts the viewer in the background (a thread of this process) and returns its URL.

    Parameters
    ----------
    project : path or list of paths
        ViRelAy project files (:func:`project`'s output).
    port : int, optional
        Default 8080; 0 picks a free port.
    host : str, optional
        Default "127.0.0.1" (this machine only); any other address (e.g. "0.0.0.0", the
        network) needs ``allow_remote=True``.
    cache_mib : int, optional
        The image cache's size; default 256.
    allow_remote : bool, optional
        Allow a non-loopback ``host``: anyone who reaches the machine can read the projects
        (consider ``token``).
    allowed_hosts : list of str, optional
        Host names answered besides IP addresses and "localhost" (e.g. the machine's name on
        the network); requests naming another host are refused (a guard against DNS rebinding).
    token : bool or str, optional
        ``True`` makes a random token, a string (16+ characters of ``A-Z a-z 0-9 - . _ ~``) is
        the token: every request must then present it. The returned URL carries it
        (``?token=…``); the browser keeps it in a cookie.

    Returns
    -------
    str
        The viewer's URL (with ``?token=…`` if a token is required). :func:`stop` stops it (it
        stops with the process too).

    Raises
    ------
    ViewerError
        The port is taken, a project cannot be read, or ``host`` is not a loopback address
        and ``allow_remote`` is false.
    InvalidArgumentError
        The token is too short or holds other characters.
    """
    ...


def stop(url: Optional[str] = None) -> None:
    """Stops the viewer started at ``url`` (:func:`serve`'s result), or every viewer this
    process started."""
    ...


def quantus_explain_func(model: Any, inputs: Any, targets: Any, **kwargs: Any) -> np.ndarray:
    """Prism as Quantus' ``explain_func``; see :func:`prism_xai.adapters.quantus_explain_func`.
    """
    ...
