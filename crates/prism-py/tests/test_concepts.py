"""`prism_xai.concepts` and `read_concepts` on the demo's MNIST model and data (assets/demo).

The Python call must write what `prism concepts` writes for the same arguments (every table,
selection, crop box and heatmap equal bit for bit, read back by `read_concepts`); the selection
read back must follow from the tables read back (zennit-crp's abs_norm order); an interrupted
call must resume to the uninterrupted file; bad options must raise `InvalidArgumentError`
before anything is written.
"""

from pathlib import Path

import numpy as np
import pytest

import prism_xai
from prism_xai import _prism
from prism_xai._errors import InvalidArgumentError, PrismError

ROOT = Path(__file__).resolve().parents[3]
DEMO = ROOT / "assets" / "demo"
MODEL = DEMO / "mnist-cnn.onnx"
DATA = DEMO / "mnist.h5"
LIMIT = 24
BATCH = 8
TOP_N = 5
CROPS = 2
HEATMAPS = 2
ARGS = dict(layers="/*/Conv", limit=LIMIT, batch_size=BATCH, top_n=TOP_N, crops=CROPS,
            sample_heatmaps=HEATMAPS)


class Stop(Exception):
    pass


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("concepts")


@pytest.fixture(scope="module")
def python_run(work):
    """The Python call, without a method: the default composite (epsilon-plus-flat)."""
    out = work / "python.h5"
    events = []
    result = prism_xai.concepts(MODEL, DATA, out, progress=events.append, **ARGS)
    return out, result, events


@pytest.fixture(scope="module")
def cli_file(work, run_cli):
    out = work / "cli.h5"
    run_cli("concepts", "--model", MODEL, "--dataset", DATA, "--layers", "/*/Conv",
            "--limit", LIMIT, "--batch-size", BATCH, "--top-n", TOP_N, "--crops", CROPS,
            "--sample-heatmaps", HEATMAPS, "--output", out)
    return out


def assert_same(a, b, where="file"):
    """Equal structure, and arrays equal in dtype, shape and bytes (NaN included)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and sorted(a) == sorted(b), (where, sorted(a), sorted(b))
        for k in a:
            assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray), where
        assert (a.dtype, a.shape) == (b.dtype, b.shape), where
        assert a.tobytes() == b.tobytes(), where
    else:
        assert a == b, where


def test_concepts_writes_what_the_cli_writes(python_run, cli_file):
    out, result, _ = python_run
    assert result["status"] == "written"
    assert result["output"] == str(out)
    assert result["samples"] == LIMIT
    assert "epsilon-plus-flat" in result["method"], result["method"]
    py, cli = prism_xai.read_concepts(out), prism_xai.read_concepts(cli_file)
    assert result["layers"] == [layer["node"] for layer in py["layers"]]
    assert len(py["layers"]) == 2  # the demo CNN's two convolutions
    assert_same(py, cli)


def test_read_concepts_gives_the_documented_arrays(python_run):
    c = prism_xai.read_concepts(python_run[0])
    assert c["index"].dtype == np.int64 and c["index"].tolist() == list(range(LIMIT))
    assert c["target"].dtype == np.int64 and c["target"].shape == (LIMIT,)
    assert c["prediction"].shape == (LIMIT, 10)
    # a trained model: the labels explained are mostly the predicted classes
    assert (c["prediction"].argmax(1) == c["target"]).mean() > 0.8
    for layer in c["layers"]:
        ch = layer["shape"][0]
        assert layer["relevance"].shape == (LIMIT, ch) and layer["relevance"].dtype == np.float32
        assert layer["activation_location"].dtype == np.int64
        assert np.abs(layer["relevance"]).sum() > 0 and np.abs(layer["activation"]).sum() > 0
        for mode in ("relmax", "actmax"):
            m = layer[mode]
            assert m["sample"].shape == (TOP_N, ch) and m["box"].shape == (TOP_N, ch, 4)
            assert m["crops"] == CROPS
        assert layer["heatmap"].shape == (LIMIT, HEATMAPS, 28, 28)
        assert layer["heatmap_channel"].shape == (LIMIT, HEATMAPS)


def test_the_selection_follows_from_the_tables(python_run):
    c = prism_xai.read_concepts(python_run[0])
    index = c["index"]
    for layer in c["layers"]:
        for mode, table, where in (("relmax", "relevance", "relevance_location"),
                                   ("actmax", "activation", "activation_location")):
            values = layer[table].astype(np.float64)
            score = (values / (np.abs(values).sum(1, keepdims=True) + 1e-10)).astype(np.float32)
            m = layer[mode]
            for ch in range(values.shape[1]):
                # best first, ties by sample number
                order = np.lexsort((index, -score[:, ch]))[:TOP_N]
                assert m["sample"][:, ch].tolist() == index[order].tolist(), (mode, ch)
                assert m["score"][:, ch].tobytes() == score[order, ch].tobytes()
                assert m["location"][:, ch].tolist() == layer[where][order, ch].tolist()
                boxes = m["box"][:, ch]
                assert (boxes[CROPS:] == 0).all()
                for k in range(CROPS):
                    if m["score"][k, ch] > 0:
                        y0, y1, x0, x1 = boxes[k]
                        assert 0 <= y0 < y1 <= 28 and 0 <= x0 < x1 <= 28, (mode, ch, k)
        # the heatmaps are those of each row's most relevant channels, largest first
        top = np.argsort(-layer["relevance"], axis=1, kind="stable")[:, :HEATMAPS]
        assert layer["heatmap_channel"].tolist() == top.tolist()
        assert np.isfinite(layer["heatmap"]).all()
        assert (np.abs(layer["heatmap"]).sum((2, 3)) > 0).all()


def test_concepts_reports_progress(python_run):
    _, result, events = python_run
    assert events[0]["event"] == "started"
    assert events[0]["total"] == LIMIT and events[0]["done"] == 0
    assert events[0]["resumed"] is False
    parts = [e for e in events if e["event"] == "part"]
    assert [e["done"] for e in parts] == [8, 16, 24]
    assert [e["event"] for e in events].count("computed") == 1
    steps = [e["what"] for e in events if e["event"] == "step"]
    assert len(steps) == len(result["layers"])
    for step, node in zip(steps, result["layers"]):
        assert node in step


def test_concepts_again_finds_the_file_complete(python_run):
    out, result, _ = python_run
    again = prism_xai.concepts(MODEL, DATA, out, progress=False, **ARGS)
    assert again["status"] == "complete"
    assert again["samples"] == LIMIT
    assert again["layers"] == result["layers"]


def test_an_interrupted_call_resumes_to_the_same_file(python_run, work):
    out = work / "resumed.h5"
    seen = []

    def stop_after_first_part(event):
        seen.append(event["event"])
        if event["event"] == "part":
            raise Stop()

    with pytest.raises(Stop):
        _prism.concepts(MODEL, DATA, out, progress=stop_after_first_part, **ARGS)
    assert seen == ["started", "part"]
    assert not out.exists()
    events = []
    result = prism_xai.concepts(MODEL, DATA, out, progress=events.append, **ARGS)
    assert result["status"] == "written"
    assert events[0]["resumed"] is True and events[0]["done"] == BATCH
    assert_same(prism_xai.read_concepts(out), prism_xai.read_concepts(python_run[0]))


def test_the_method_is_taken_from_keywords(work):
    out = work / "epsilon-plus.h5"
    result = prism_xai.concepts(MODEL, DATA, out, layers=["/*/Conv"], limit=BATCH,
                                batch_size=BATCH, top_n=3, crops=0, composite="epsilon-plus",
                                progress=False)
    assert "epsilon-plus" in result["method"] and "flat" not in result["method"]
    c = prism_xai.read_concepts(out)
    assert c["layers"][0]["relmax"]["crops"] == 0
    assert (c["layers"][0]["relmax"]["box"] == 0).all()
    assert "heatmap" not in c["layers"][0]


def test_bad_options_are_invalid_arguments(work):
    out = work / "never.h5"
    cases = [
        (dict(layers="/*/Conv", top_k=3), "unknown option `top_k`"),
        (dict(layers="/nope/*"), "matches no node"),
        (dict(layers=[]), "`layers` is required"),
        (dict(layers="/*/Conv", crops=9, top_n=4), "more than the top_n"),
        (dict(layers="/*/Conv", top_n=0), "top_n"),
        (dict(layers="/*/Conv", batch_size=0), "batch_size"),
        (dict(layers="/*/Conv", target="most-likely"), "target"),
        (dict(layers="/*/Conv", shard="3/3"), "shard"),
        (dict(layers="/*/Conv", method={"compositee": "epsilon-plus"}), "compositee"),
        (dict(layers=3), "layers"),
    ]
    for options, message in cases:
        with pytest.raises(InvalidArgumentError) as e:
            _prism.concepts(MODEL, DATA, out, limit=BATCH, **options)
        assert message in str(e.value), (options, str(e.value))
        assert isinstance(e.value, ValueError) and isinstance(e.value, PrismError)
    with pytest.raises(TypeError):
        prism_xai.concepts(MODEL, DATA, out)  # layers is a required keyword
    with pytest.raises(InvalidArgumentError, match="gama"):
        prism_xai.concepts(MODEL, DATA, out, layers="/*/Conv", gama=0.5)
    assert not out.exists()
    assert not Path(str(out) + ".partial").exists()


def test_read_concepts_refuses_other_files():
    with pytest.raises(PrismError):
        prism_xai.read_concepts(DATA)
    with pytest.raises(FileNotFoundError):
        prism_xai.read_concepts(DEMO / "missing.h5")
