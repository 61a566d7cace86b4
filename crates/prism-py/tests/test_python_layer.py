"""The pure-Python layer of prism_xai: argument handling, adapters, progress, stubs.

No torch here (CI has none) and no model computation: the extension's Model is replaced by a
recording stand-in wherever a test checks what the Python layer passes down. The numbers
themselves are tested against the CLI in the other test files.
"""

import ast
import inspect
import logging
import os
import pathlib

import numpy as np
import pytest

import prism_xai
from prism_xai import _prism, _progress, adapters, zennit
from prism_xai import InvalidArgumentError, PrismError

PKG = pathlib.Path(prism_xai.__file__).parent


class RecordingModel:
    """Stands in for ``_prism.Model``: records the arguments, returns arrays of the right shape."""

    def __init__(self, n_classes=10, logits=None):
        self.path = "fake.onnx"
        self.inputs = [{"name": "input", "shape": ["batch", 3, 8, 8], "dtype": "float32"}]
        self.outputs = [{"name": "output", "shape": ["batch", n_classes]}]
        self.n_classes = n_classes
        self.logits = logits
        self.calls = []

    def predict(self, x, *, dtype="float32", batch_size=16):
        self.calls.append(("predict", x, dict(dtype=dtype, batch_size=batch_size)))
        if self.logits is not None:
            return self.logits.astype(dtype)
        return np.arange(x.shape[0] * self.n_classes, dtype=dtype).reshape(x.shape[0], -1)

    def explain(self, x, *, target="predicted", dtype="float32", batch_size=16,
                attribute_at=None, method=None, reduce_hidden="none", concepts=None):
        self.calls.append(("explain", x, dict(target=target, dtype=dtype, batch_size=batch_size,
                                              attribute_at=attribute_at, method=method,
                                              reduce_hidden=reduce_hidden)))
        r = np.ones(x.shape, dtype=dtype)
        return r, np.zeros(x.shape[0], np.int64), "input", []


def fake_model(**kw):
    inner = RecordingModel(**kw)
    return prism_xai.Model._wrap(inner), inner


# ------------------------------------------------------------------------------------------------
# explain's arguments
# ------------------------------------------------------------------------------------------------


def test_explain_passes_the_input_array_through_without_a_copy():
    m, inner = fake_model()
    x = np.asfortranarray(np.random.default_rng(0).standard_normal((2, 3, 8, 8)))
    m.explain(x)
    assert inner.calls[-1][1] is x


def test_explain_builds_the_method_dict_from_keyword_arguments():
    m, inner = fake_model()
    x = np.zeros((2, 3, 8, 8), np.float32)
    m.explain(x, 3, composite="epsilon-gamma-box", low=np.float64(-2.0),
              high=np.array([1.0, 2.0, 3.0]), window=(4, 4), no_canonize=True)
    _, _, kw = inner.calls[-1]
    assert kw["target"] == 3
    assert kw["method"] == {"composite": "epsilon-gamma-box", "attributor": "gradient",
                            "low": -2.0, "high": [1.0, 2.0, 3.0], "window": [4, 4],
                            "canonize": False}
    assert type(kw["method"]["low"]) is float


def test_explain_composite_file_accepts_a_path_object(tmp_path):
    m, inner = fake_model()
    m.explain(np.zeros((1, 3, 8, 8)), composite_file=tmp_path / "c.toml")
    assert inner.calls[-1][2]["method"]["composite_file"] == str(tmp_path / "c.toml")


def test_explain_unknown_parameter_is_an_invalid_argument_naming_the_valid_ones():
    m, _ = fake_model()
    with pytest.raises(InvalidArgumentError) as e:
        m.explain(np.zeros((1, 3, 8, 8)), composite="epsilon-plus", gama=0.5)
    assert isinstance(e.value, ValueError) and isinstance(e.value, PrismError)
    assert "gama" in str(e.value) and "gamma" in str(e.value) and "epsilon" in str(e.value)


def test_explain_refuses_composite_and_composite_file_together():
    m, _ = fake_model()
    with pytest.raises(InvalidArgumentError, match="not both"):
        m.explain(np.zeros((1, 3, 8, 8)), composite="epsilon-plus", composite_file="c.toml")


@pytest.mark.parametrize("target, expected", [
    ("predicted", "predicted"),
    (np.int32(4), 4),
    (np.array(5), 5),
])
def test_explain_target_scalars(target, expected):
    m, inner = fake_model()
    m.explain(np.zeros((2, 3, 8, 8)), target)
    assert inner.calls[-1][2]["target"] == expected


def test_explain_per_sample_targets_become_int64():
    m, inner = fake_model()
    m.explain(np.zeros((3, 3, 8, 8)), [1, 2, 3])
    t = inner.calls[-1][2]["target"]
    assert t.dtype == np.int64 and t.tolist() == [1, 2, 3]


@pytest.mark.parametrize("target", [True, np.array([[1, 2, 3]]), np.array([0.5, 1.0])])
def test_explain_refuses_targets_that_are_not_class_indices(target):
    m, _ = fake_model()
    with pytest.raises(InvalidArgumentError):
        m.explain(np.zeros((2, 3, 8, 8)), target)


def test_method_keys_cover_the_explicit_and_rule_parameters():
    assert set(prism_xai.METHOD_KEYS) == set(prism_xai.RULE_PARAM_KEYS) | {
        "composite", "composite_file", "attributor"}
    for key in ("epsilon", "gamma", "low", "high", "n_iter", "window", "seed_mode", "canonize"):
        assert key in prism_xai.RULE_PARAM_KEYS


# ------------------------------------------------------------------------------------------------
# Dataset jobs, viewer
# ------------------------------------------------------------------------------------------------


def test_attribute_splits_method_parameters_from_job_options(monkeypatch, tmp_path):
    seen = {}

    def fake_attribute(model, dataset, output, *, method=None, progress=None, **options):
        seen.update(model=model, dataset=dataset, output=output, method=method, options=options)
        progress({"event": "started", "total": 4, "done": 0, "resumed": False, "output": output})
        progress({"event": "part", "total": 4, "done": 4})
        return {"status": "written", "output": output, "samples": 4}

    monkeypatch.setattr(_prism, "attribute", fake_attribute, raising=False)
    events = []
    result = prism_xai.attribute(tmp_path / "m.onnx", tmp_path / "images", tmp_path / "a.h5",
                                 composite="epsilon-plus-flat", gamma=0.5, batch_size=8,
                                 labels=tmp_path / "labels.txt", progress=events.append)
    assert result["status"] == "written"
    assert seen["model"] == str(tmp_path / "m.onnx")
    assert seen["method"] == {"composite": "epsilon-plus-flat", "gamma": 0.5}
    assert seen["options"] == {"batch_size": 8, "labels": str(tmp_path / "labels.txt")}
    assert [e["event"] for e in events] == ["started", "part"]


def test_attribute_takes_a_model_object(monkeypatch):
    seen = {}
    monkeypatch.setattr(_prism, "attribute",
                        lambda model, *a, **k: seen.setdefault("model", model) and {},
                        raising=False)
    m, _ = fake_model()
    prism_xai.attribute(m, "d", "o.h5", progress=False)
    assert seen["model"] == "fake.onnx"


def test_serve_keeps_the_server_and_stop_stops_it(monkeypatch):
    class Server:
        def __init__(self, port):
            self.url = f"http://127.0.0.1:{port}/"
            self.stopped = False

        def stop(self):
            self.stopped = True

    servers = []

    def fake_serve(projects, *, host, port, cache_mib, allow_remote, allowed_hosts, token):
        servers.append(Server(port))
        return servers[-1]

    monkeypatch.setattr(_prism, "serve", fake_serve, raising=False)
    u1 = prism_xai.serve(pathlib.Path("p.yaml"), port=9001)
    u2 = prism_xai.serve(["p.yaml", "q.yaml"], port=9002)
    assert u1 == "http://127.0.0.1:9001/"
    prism_xai.stop(u1)
    assert servers[0].stopped and not servers[1].stopped
    with pytest.raises(InvalidArgumentError, match="no viewer"):
        prism_xai.stop(u1)
    prism_xai.stop()
    assert servers[1].stopped
    assert u2 not in prism_xai._servers


# ------------------------------------------------------------------------------------------------
# Progress display
# ------------------------------------------------------------------------------------------------


def test_progress_without_tqdm_logs_and_never_prints(monkeypatch, caplog, capsys):
    monkeypatch.setattr(_progress, "_tqdm", lambda: None)
    with caplog.at_level(logging.INFO, logger="prism_xai"):
        with _progress.make("attribute", True) as p:
            p({"event": "started", "total": 10, "done": 3, "resumed": True, "output": "a.h5"})
            p({"event": "part", "total": 10, "done": 10})
            p({"event": "stage", "stage": "eigen", "class": 3})
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    text = caplog.text
    assert "3/10 (resumed)" in text and "10/10" in text and "eigen" in text


def test_progress_false_shows_nothing(monkeypatch, caplog):
    monkeypatch.setattr(_progress, "_tqdm", lambda: None)
    with caplog.at_level(logging.INFO, logger="prism_xai"):
        with _progress.make("attribute", False) as p:
            p({"event": "part", "total": 10, "done": 10})
    assert caplog.text == ""


# ------------------------------------------------------------------------------------------------
# Heatmap
# ------------------------------------------------------------------------------------------------


def test_heatmap_refuses_float_pixels():
    with pytest.raises(InvalidArgumentError, match="uint8"):
        prism_xai.Heatmap(np.zeros((4, 4, 3)))


def test_heatmap_arithmetic_gives_a_plain_array():
    h = prism_xai.Heatmap(np.zeros((4, 4, 3), np.uint8))
    f = h / 255.0
    assert type(f) is np.ndarray and f.dtype == np.float64
    assert h._repr_png_ is not None
    assert prism_xai.Heatmap(np.zeros((4, 4, 3), np.uint8))[0, 0]._image() is None


@pytest.mark.skipif(not hasattr(_prism, "encode_png"), reason="extension without heatmaps")
def test_heatmap_displays_as_png_and_a_batch_as_a_grid(tmp_path):
    h = prism_xai.Heatmap(np.zeros((4, 5, 6, 3), np.uint8))
    png = h._repr_png_()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    h.save(tmp_path / "h.png")
    assert (tmp_path / "h.png").read_bytes() == png
    assert h[0]._repr_png_()[:4] == b"\x89PNG"


def test_grid_refuses_relevance():
    with pytest.raises(InvalidArgumentError, match="heatmap"):
        prism_xai.grid([np.zeros((4, 4), np.float32)])


# ------------------------------------------------------------------------------------------------
# Adapters
# ------------------------------------------------------------------------------------------------


def test_zennit_one_hot_output_gradient_becomes_targets():
    out = np.array([[1.0, 5.0, 2.0], [3.0, 1.0, 0.5]])
    t, mode = zennit.seed_from_output_gradient(np.eye(3)[[2, 0]], out)
    assert t.tolist() == [2, 0] and mode == "one-hot"
    t, mode = zennit.seed_from_output_gradient(np.eye(3)[[1, 0]] * out, out)
    assert t.tolist() == [1, 0] and mode == "logit"


@pytest.mark.parametrize("grad", [
    np.array([[1.0, 1.0, 0.0]]),    # two classes
    np.array([[0.0, 0.0, 0.0]]),    # none
    np.array([[0.0, 0.5, 0.0]]),    # a soft weight
])
def test_zennit_refuses_output_gradients_that_are_not_one_hot(grad):
    with pytest.raises(InvalidArgumentError):
        zennit.seed_from_output_gradient(grad, np.array([[1.0, 2.0, 3.0]]))


def test_zennit_gradient_calls_explain_with_the_targets_and_seed_mode():
    m, inner = fake_model(n_classes=4)
    x = np.zeros((2, 3, 8, 8))  # float64: computed in float64, as Zennit on .double()
    with zennit.Gradient(m, "epsilon-plus", epsilon=1e-3) as attributor:
        out, rel = attributor(x, np.eye(4)[[3, 1]])
    _, _, kw = inner.calls[-1]
    assert kw["dtype"] == "float64"
    assert kw["target"].tolist() == [3, 1]
    assert kw["method"]["seed_mode"] == "one-hot"
    assert kw["method"]["composite"] == "epsilon-plus" and kw["method"]["epsilon"] == 1e-3
    assert out.shape == (2, 4) and rel.shape == x.shape


def test_zennit_gradient_takes_a_callable_output_gradient():
    m, inner = fake_model(n_classes=4)
    x = np.zeros((2, 3, 8, 8), np.float32)
    onehot = np.eye(4, dtype=np.float32)[[1, 2]]  # the fake logits are 0, 1, 2, ...: not 0
    zennit.Gradient(m, "epsilon-plus")(x, lambda out: out * onehot)
    assert inner.calls[-1][2]["method"]["seed_mode"] == "logit"


def test_zennit_refuses_composite_objects_with_the_name_to_use():
    class EpsilonGammaBox:
        pass

    with pytest.raises(InvalidArgumentError, match="epsilon-gamma-box"):
        zennit.Gradient(None, EpsilonGammaBox())


def test_quantus_adapter_sums_channels_like_quantus_and_ignores_device():
    m, inner = fake_model()
    x = np.zeros((2, 3, 8, 8), np.float32)
    a = adapters.quantus_explain_func(m, x, np.array([1, 2]), device="cpu",
                                      composite="epsilon-plus-flat")
    assert a.shape == (2, 1, 8, 8) and np.all(a == 3)
    assert inner.calls[-1][2]["target"].tolist() == [1, 2]
    a = prism_xai.quantus_explain_func(m, x, np.array([1.0, 2.0]), reduce_axes=())
    assert a.shape == x.shape


@pytest.mark.parametrize("kwargs", [{"softmax": True}, {"channel_first": False},
                                    {"reduce_axes": (0,)}, {"methd": "x"}])
def test_quantus_adapter_refuses_what_it_cannot_honour(kwargs):
    m, _ = fake_model()
    with pytest.raises(InvalidArgumentError):
        adapters.quantus_explain_func(m, np.zeros((1, 3, 8, 8)), np.array([0]), **kwargs)


# ------------------------------------------------------------------------------------------------
# from_torch's pieces that need no torch
# ------------------------------------------------------------------------------------------------


def test_torch_cache_dir_default(monkeypatch):
    from prism_xai import _torch

    monkeypatch.setenv("PRISM_CACHE", "/x/y")
    assert _torch.default_cache_dir() == "/x/y"
    monkeypatch.delenv("PRISM_CACHE")
    assert _torch.default_cache_dir().endswith(os.path.join(".cache", "prism-xai", "onnx"))


def test_importing_prism_xai_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, prism_xai, prism_xai.zennit, prism_xai.adapters; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------------------------------------------
# Stubs
# ------------------------------------------------------------------------------------------------


def _stub_docs(path):
    tree = ast.parse(path.read_text())
    docs = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            docs[node.name] = ast.get_docstring(node)
        elif isinstance(node, ast.ClassDef):
            docs[node.name] = ast.get_docstring(node)
            for sub in node.body:
                if isinstance(sub, ast.FunctionDef):
                    docs[f"{node.name}.{sub.name}"] = ast.get_docstring(sub)
    return docs


def test_stub_docstrings_are_the_runtime_docstrings():
    docs = _stub_docs(PKG / "__init__.pyi")
    assert "Model.explain" in docs and "heatmap" in docs
    for name, doc in docs.items():
        if doc is None:
            continue
        obj = prism_xai
        for part in name.split("."):
            obj = getattr(obj, part)
        if isinstance(obj, property):
            obj = obj.fget
        assert inspect.getdoc(obj) == doc, name


def test_stub_signatures_match_the_runtime_ones():
    tree = ast.parse((PKG / "__init__.pyi").read_text())
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            runtime = inspect.signature(getattr(prism_xai, node.name))
            stub = [a.arg for a in node.args.args + node.args.kwonlyargs]
            assert stub == [p.name for p in runtime.parameters.values()
                            if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)], node.name
