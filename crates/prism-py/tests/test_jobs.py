"""The dataset jobs of `prism_xai._prism`: attribute, analyze, project, evaluate, the lazy
readers and serve, on the demo's MNIST model and data (assets/demo).

The attribution must equal the `prism` binary's bit for bit (skipped when no binary is found:
set PRISM_BIN, or build `cargo build --release -p prism-cli`); an interrupted run must resume to
the file an uninterrupted run writes; errors must come out as the documented classes.
"""

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from prism_xai import _prism
from prism_xai._errors import (
    AnalysisError,
    InvalidArgumentError,
    PrismError,
    PrismFileNotFoundError,
    StoreError,
)

ROOT = Path(__file__).resolve().parents[3]
DEMO = ROOT / "assets" / "demo"
MODEL = DEMO / "mnist-cnn.onnx"
DATA = DEMO / "mnist.h5"
LABEL_MAP = DEMO / "label-map.json"
METHOD = {"composite": "epsilon-plus-flat"}
LIMIT = 96
BATCH = 32


def prism_binary():
    """The `prism` binary to compare with, or None."""
    candidates = []
    if os.environ.get("PRISM_BIN"):
        candidates.append(Path(os.environ["PRISM_BIN"]))
    for target in [os.environ.get("CARGO_TARGET_DIR"), ROOT / "target"]:
        if target:
            candidates += [Path(target) / "release" / "prism", Path(target) / "debug" / "prism"]
    return next((c for c in candidates if c.is_file() and os.access(c, os.X_OK)), None)


def contents(path):
    """Everything an attribution file holds that a resumed run must reproduce."""
    f = _prism.read_attribution(str(path))
    return {
        "attribution": f.read().tobytes(),
        "prediction": f.prediction().tobytes(),
        "labels": f.labels.tobytes(),
        "index": f.index.tobytes(),
        "shape": f.shape,
        "method": f.method,
    }


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("jobs")


@pytest.fixture(scope="module")
def reference(work):
    """One uninterrupted attribution of the first LIMIT samples."""
    out = work / "reference.h5"
    events = []
    result = _prism.attribute(
        MODEL, DATA, out, method=METHOD, limit=LIMIT, batch_size=BATCH, progress=events.append
    )
    return out, result, events


def test_attribute_writes_the_file_and_reports_progress(reference):
    out, result, events = reference
    assert result["status"] == "written"
    assert result["samples"] == LIMIT
    assert result["output"] == str(out)
    assert "epsilon-plus-flat" in result["method"]
    assert events[0]["event"] == "started"
    assert events[0]["total"] == LIMIT and events[0]["done"] == 0
    assert events[0]["resumed"] is False
    parts = [e for e in events if e["event"] == "part"]
    assert [e["done"] for e in parts] == [32, 64, 96]
    assert all(e["total"] == LIMIT for e in parts)


def test_attribute_again_finds_the_file_complete(reference):
    out, _, _ = reference
    again = _prism.attribute(str(MODEL), str(DATA), str(out), method=METHOD, limit=LIMIT,
                             batch_size=BATCH)
    assert again["status"] == "complete"
    assert again["samples"] == LIMIT


def test_read_attribution_reads_lazily_by_class(reference):
    out, _, _ = reference
    f = _prism.read_attribution(out)
    assert len(f) == LIMIT
    assert f.shape == (LIMIT, 1, 28, 28)
    labels = f.labels
    assert labels.dtype == np.int64 and labels.shape == (LIMIT,)
    assert f.classes() == sorted(set(labels.tolist()))
    everything = f.read()
    assert everything.dtype == np.float32 and everything.shape == (LIMIT, 1, 28, 28)
    assert np.isfinite(everything).all() and np.abs(everything).sum() > 0
    c = f.classes()[0]
    rows = f.indices(class_=c)
    assert rows.dtype == np.int64
    assert (labels[rows] == c).all() and len(rows) == (labels == c).sum()
    np.testing.assert_array_equal(f.read(class_=c), everything[rows])
    np.testing.assert_array_equal(f.read(indices=[5, 2, 5, -1]), everything[[5, 2, 5, LIMIT - 1]])
    np.testing.assert_array_equal(f.index, np.arange(LIMIT))
    prediction = f.prediction()
    assert prediction.shape == (LIMIT, 10)
    np.testing.assert_array_equal(f.prediction(indices=[3, 1]), prediction[[3, 1]])
    assert "epsilon-plus-flat" in f.method
    assert f.attr("prism_complete") == 1
    assert f.attr("no_such_attribute") is None
    with pytest.raises(IndexError):
        f.read(indices=[LIMIT])
    with pytest.raises(InvalidArgumentError):
        f.read(indices=[0], class_=c)


def test_attribute_equals_the_cli_bit_for_bit(reference, work):
    binary = prism_binary()
    if binary is None:
        pytest.skip("no prism binary (set PRISM_BIN or build prism-cli)")
    out, _, _ = reference
    cli = work / "cli.h5"
    subprocess.run(
        [str(binary), "attribute", "--model", str(MODEL), "--dataset", str(DATA), "--output",
         str(cli), "--composite", "epsilon-plus-flat", "--limit", str(LIMIT), "--batch-size",
         str(BATCH)],
        check=True, capture_output=True,
    )
    assert contents(cli) == contents(out)


class Killed(Exception):
    pass


def test_interrupted_attribute_resumes_to_the_same_file(reference, work):
    out = work / "resumed.h5"
    seen = []

    def kill_after_first_part(event):
        seen.append(event)
        if event["event"] == "part":
            raise Killed()

    with pytest.raises(Killed):
        _prism.attribute(MODEL, DATA, out, method=METHOD, limit=LIMIT, batch_size=BATCH,
                         progress=kill_after_first_part)
    assert not out.exists()
    assert Path(str(out) + ".partial").is_dir()
    assert [e["event"] for e in seen] == ["started", "part"]

    events = []
    result = _prism.attribute(MODEL, DATA, out, method=METHOD, limit=LIMIT, batch_size=BATCH,
                              progress=events.append)
    assert result["status"] == "written"
    assert events[0]["resumed"] is True and events[0]["done"] == BATCH
    assert [e["done"] for e in events if e["event"] == "part"] == [64, 96]
    assert contents(out) == contents(reference[0])


def test_ctrl_c_stops_attribute_after_the_current_part_and_it_resumes(reference, work):
    out = work / "ctrl-c.h5"

    def press_ctrl_c(event):
        if event["event"] == "part" and event["done"] == BATCH:
            os.kill(os.getpid(), signal.SIGINT)
            # The calling thread sees the signal while this part is being reported.
            time.sleep(0.3)

    with pytest.raises(KeyboardInterrupt):
        _prism.attribute(MODEL, DATA, out, method=METHOD, limit=LIMIT, batch_size=BATCH,
                         progress=press_ctrl_c)
    assert not out.exists()
    events = []
    _prism.attribute(MODEL, DATA, out, method=METHOD, limit=LIMIT, batch_size=BATCH,
                     progress=events.append)
    assert events[0]["resumed"] is True and events[0]["done"] == BATCH
    assert contents(out) == contents(reference[0])


def test_attribute_options_are_checked():
    with pytest.raises(InvalidArgumentError, match="batch_size"):
        _prism.attribute(MODEL, DATA, "x.h5", batch_sise=4)
    with pytest.raises(InvalidArgumentError, match="batch_size"):
        _prism.attribute(MODEL, DATA, "x.h5", batch_size="four")
    with pytest.raises(InvalidArgumentError, match="resize"):
        _prism.attribute(MODEL, DATA, "x.h5", resize="big")
    with pytest.raises(InvalidArgumentError, match="normalize"):
        _prism.attribute(MODEL, DATA, "x.h5", normalize="cifar")
    with pytest.raises(InvalidArgumentError, match="shard"):
        _prism.attribute(MODEL, DATA, "x.h5", shard="4/4")
    with pytest.raises(InvalidArgumentError, match="target"):
        _prism.attribute(MODEL, DATA, "x.h5", target="most-likely")
    with pytest.raises(InvalidArgumentError, match="epsilon"):
        _prism.attribute(MODEL, DATA, "x.h5", method={"epsilon": "small"})
    with pytest.raises(InvalidArgumentError, match="composite_file"):
        _prism.attribute(MODEL, DATA, "x.h5", method={"compositee": "epsilon-plus"})
    with pytest.raises(InvalidArgumentError):
        _prism.attribute(MODEL, DATA, "x.h5", progress=3)
    assert not Path("x.h5").exists()


CRP = ROOT / "tests" / "fixtures" / "crp"


def test_attribute_records_what_explain_concepts_records(tmp_path):
    """`attribute(record=...)`: the file's /record group holds `explain_concepts`'s recorded
    relevance, activations and top tables for the same samples and batch size, bit for bit."""
    import prism_xai

    data = tmp_path / "images.npy"
    shutil.copy(CRP / "crp_refsel.data.npy", data)
    shutil.copy(CRP / "crp_refsel.labels.npy", tmp_path / "images.labels.npy")
    model = CRP / "crp_vgg.onnx"
    record = ["/features/*/Conv", "/classifier/classifier.0/Gemm"]
    out = tmp_path / "attr.h5"
    done = prism_xai.attribute(model, data, out, composite="epsilon-plus-flat",
                               target="predicted", batch_size=8, record=record,
                               record_mode="maps", top_k=4, progress=False)
    assert done["status"] == "written" and done["samples"] == 24
    want = prism_xai.Model(model).explain_concepts(
        np.load(data), "predicted", composite="epsilon-plus-flat", batch_size=8,
        record=record, record_mode="maps", top_k=4,
    )["recorded"]
    got = _prism.read_attribution(out).record()
    assert list(got) == list(want)
    for node, w in want.items():
        g = got[node]
        assert g["tensor"] == w["tensor"]
        assert list(g["sample_shape"]) == list(w["sample_shape"])
        for key in ["relevance", "activation", "top_channels", "top_share"]:
            assert g[key].dtype == w[key].dtype and g[key].shape == w[key].shape, (node, key)
            assert g[key].tobytes() == w[key].tobytes(), (node, key)
        assert np.abs(g["relevance"]).sum() > 0

    plain = tmp_path / "plain.h5"
    prism_xai.attribute(model, data, plain, composite="epsilon-plus-flat", target="predicted",
                        batch_size=8, progress=False)
    assert _prism.read_attribution(plain).record() is None
    with pytest.raises(InvalidArgumentError, match="matches no node"):
        prism_xai.attribute(model, data, tmp_path / "a.h5", composite="epsilon-plus-flat",
                            record="/nope/*", progress=False)
    with pytest.raises(InvalidArgumentError, match="need `record`"):
        prism_xai.attribute(model, data, tmp_path / "a.h5", top_k=3, progress=False)
    with pytest.raises(InvalidArgumentError, match="maps"):
        prism_xai.attribute(model, data, tmp_path / "a.h5", record=record,
                            record_mode="pixels", progress=False)
    assert not (tmp_path / "a.h5").exists() and not (tmp_path / "a.h5.partial").exists()


def test_missing_files_raise_file_not_found(work):
    with pytest.raises(PrismFileNotFoundError) as e:
        _prism.attribute(work / "missing.onnx", DATA, work / "a.h5")
    assert isinstance(e.value, FileNotFoundError) and "missing.onnx" in str(e.value)
    with pytest.raises(PrismFileNotFoundError, match="missing.h5"):
        _prism.attribute(MODEL, work / "missing.h5", work / "a.h5")
    with pytest.raises(PrismFileNotFoundError):
        _prism.read_attribution(work / "missing.h5")
    with pytest.raises(PrismFileNotFoundError):
        _prism.read_analysis(work / "missing.h5")
    with pytest.raises(PrismFileNotFoundError):
        _prism.analyze(work / "missing.h5", work / "analysis.h5")


def test_an_output_of_other_settings_is_not_overwritten(reference, work):
    other = work / "other.h5"
    shutil.copy(reference[0], other)
    with pytest.raises(StoreError, match="force"):
        _prism.attribute(MODEL, DATA, other, method={"composite": "epsilon-alpha2-beta1"},
                         limit=LIMIT, batch_size=BATCH)


@pytest.fixture(scope="module")
def project_dir(reference, work):
    """Dataset, label map, attribution and analysis side by side, as a project wants them."""
    d = work / "project"
    d.mkdir()
    shutil.copy(DATA, d / "mnist.h5")
    shutil.copy(LABEL_MAP, d / "label-map.json")
    shutil.copy(reference[0], d / "attribution.h5")
    return d


FAST = dict(neighbors=8, eigenvalues=6, k_range=(2, 3), no_tsne=True, no_umap=True,
            no_dbscan=True, no_hdbscan=True)


def test_analyze_writes_categories_readable_as_arrays(project_dir):
    events = []
    result = _prism.analyze(project_dir / "attribution.h5", project_dir / "analysis.h5",
                            label_map=project_dir / "label-map.json", progress=events.append,
                            **FAST)
    assert result["output"] == str(project_dir / "analysis.h5")
    names = [c["name"] for c in result["categories"]]
    assert events[0] == {"event": "started", "done": 0, "total": len(names)}
    assert [e["done"] for e in events if e["event"] == "part"] == list(range(1, len(names) + 1))
    assert any(e["event"] == "stage" for e in events)

    a = _prism.read_analysis(result["output"])
    assert sorted(a.categories()) == sorted(names)
    attribution = _prism.read_attribution(project_dir / "attribution.h5")
    first = result["categories"][0]
    cat = a.category(first["name"])
    n = first["samples"]
    assert cat["index"].dtype == np.int64 and cat["index"].shape == (n,)
    assert set(cat["index"].tolist()) <= set(attribution.index.tolist())
    spectral = [k for k in cat if k.startswith("embedding/")]
    assert spectral and all(cat[k].shape[0] == n for k in spectral)
    clusters = [k for k in cat if k.startswith("cluster/")]
    assert clusters and all(cat[k].shape == (n,) for k in clusters)
    assert cat["suggested_k"] == first["suggested_k"]
    with pytest.raises(InvalidArgumentError):
        a.category("no-such-category")

    # A rerun without force refuses to overwrite; a bad parameter is an invalid argument.
    with pytest.raises(AnalysisError, match="force"):
        _prism.analyze(project_dir / "attribution.h5", project_dir / "analysis.h5", **FAST)
    with pytest.raises(InvalidArgumentError, match="knn.k"):
        _prism.analyze(project_dir / "attribution.h5", project_dir / "other.h5", neighbors=0)
    with pytest.raises(InvalidArgumentError, match="variant"):
        _prism.analyze(project_dir / "attribution.h5", project_dir / "other.h5",
                       variant="cubist")
    with pytest.raises(InvalidArgumentError, match="no_umap"):
        _prism.analyze(project_dir / "attribution.h5", project_dir / "other.h5", umap=False)


def test_project_and_serve(project_dir):
    if not (project_dir / "analysis.h5").exists():
        _prism.analyze(project_dir / "attribution.h5", project_dir / "analysis.h5", **FAST)
    yaml = project_dir / "project.yaml"
    result = _prism.project(project_dir / "mnist.h5", [project_dir / "attribution.h5"], yaml,
                            analyses=[project_dir / "analysis.h5"],
                            label_map=project_dir / "label-map.json", name="MNIST")
    assert result["output"] == str(yaml) and result["name"] == "MNIST"
    assert yaml.is_file()
    with pytest.raises(StoreError, match="force"):
        _prism.project(project_dir / "mnist.h5", project_dir / "attribution.h5", yaml)

    server = _prism.serve([str(yaml)], port=0)
    try:
        assert server.url.startswith("http://127.0.0.1:") and not server.url.endswith(":0/")
        assert server.running
        with urllib.request.urlopen(server.url + "api/projects", timeout=10) as reply:
            assert reply.status == 200
            assert "MNIST" in reply.read().decode()
    finally:
        server.stop()
    assert not server.running
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(server.url + "api/projects", timeout=2)
    server.stop()  # twice is harmless

    with pytest.raises(PrismError):
        _prism.serve([str(project_dir / "missing.yaml")], port=0)

    # A token: the URL carries it; a request without it gets 401.
    server = _prism.serve([str(yaml)], port=0, token=True)
    try:
        base, token = server.url.split("?token=")
        assert len(token) == 32
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(base + "api/projects", timeout=10)
        assert refused.value.code == 401
        with urllib.request.urlopen(base + "api/projects?token=" + token, timeout=10) as reply:
            assert reply.status == 200
    finally:
        server.stop()
    with pytest.raises(InvalidArgumentError, match="16"):
        _prism.serve([str(yaml)], port=0, token="short")
    # Another address than loopback needs allow_remote.
    with pytest.raises(PrismError, match="allow_remote"):
        _prism.serve([str(yaml)], port=0, host="0.0.0.0")


def test_evaluate_writes_a_report_like_the_cli(work):
    rng = np.random.default_rng(0)
    # Float64 and Fortran order: the job converts both.
    x = np.asfortranarray(rng.random((2, 1, 28, 28)))
    options = dict(methods=["gradient"], steps=4, patch_size=7, randomisation="none",
                   no_plots=True)
    events = []
    report = _prism.evaluate(MODEL, x, work / "eval", progress=events.append, **options)
    assert (work / "eval" / "report.json").is_file()
    assert report["ranking"] == ["gradient"]
    assert report["input_shape"] == [2, 1, 28, 28]
    assert any(e["event"] == "stage" for e in events)

    labelled = _prism.evaluate(MODEL, x, work / "eval-labels", target=np.array([3, 7]),
                               **options)
    assert labelled["targets"] == [3, 7]
    assert _prism.evaluate(MODEL, x, work / "eval-class", target=5, **options)["targets"] == [5, 5]
    with pytest.raises(InvalidArgumentError, match="target"):
        _prism.evaluate(MODEL, x, work / "eval", target=np.array([1, 2, 3]), **options)

    with pytest.raises(InvalidArgumentError, match="top_k"):
        _prism.evaluate(MODEL, x, work / "eval", top_k=2.0, **options)
    with pytest.raises(InvalidArgumentError, match="unknown method"):
        _prism.evaluate(MODEL, x, work / "eval", **{**options, "methods": ["magic"]})
    with pytest.raises(InvalidArgumentError):
        _prism.evaluate(MODEL, x.astype(np.int64), work / "eval", **options)

    binary = prism_binary()
    if binary is None:
        return
    npy = work / "x.npy"
    np.save(npy, np.ascontiguousarray(x, dtype=np.float32))
    subprocess.run(
        [str(binary), "evaluate", str(MODEL), str(npy), "-o", str(work / "cli-eval"),
         "--methods", "gradient", "--steps", "4", "--patch-size", "7", "--randomisation",
         "none", "--no-plots"],
        check=True, capture_output=True,
    )
    cli = json.loads((work / "cli-eval" / "report.json").read_text())
    ours = json.loads((work / "eval" / "report.json").read_text())

    def untimed(value):
        if isinstance(value, dict):
            return {k: untimed(v) for k, v in value.items() if not k.endswith("_seconds")}
        if isinstance(value, list):
            return [untimed(v) for v in value]
        return value

    assert untimed(ours) == untimed(cli)
    assert untimed(report)["methods"] == untimed(cli)["methods"]


def test_evaluate_quantus_metrics_equal_the_cli(work):
    x = np.random.default_rng(1).random((2, 1, 28, 28)).astype(np.float32)
    metrics = dict(metrics=["fc", "road", "irof"], fc_runs=5, fc_subset_size=40,
                   road_percentages=[10.0, 50.0])
    options = dict(methods=["gradient"], steps=4, patch_size=7, randomisation="none",
                   no_plots=True, **metrics)
    report = _prism.evaluate(MODEL, x, work / "evalq", **options)
    method = report["methods"][0]
    assert len(method["faithfulness_correlation"]["per_sample"]) == 2
    assert method["road"]["percentages"] == [10.0, 50.0]
    assert len(method["irof"]["per_sample"]) == 2
    with pytest.raises(InvalidArgumentError, match="metrics"):
        _prism.evaluate(MODEL, x, work / "evalq", **{**options, "metrics": ["magic"]})
    binary = prism_binary()
    if binary is None:
        return
    npy = work / "xq.npy"
    np.save(npy, x)
    subprocess.run(
        [str(binary), "evaluate", str(MODEL), str(npy), "-o", str(work / "cli-evalq"),
         "--methods", "gradient", "--steps", "4", "--patch-size", "7", "--randomisation",
         "none", "--no-plots", "--metrics", "fc,road,irof", "--fc-runs", "5",
         "--fc-subset-size", "40", "--road-percentages", "10,50"],
        check=True, capture_output=True,
    )
    cli = json.loads((work / "cli-evalq" / "report.json").read_text())
    for key in ("faithfulness_correlation", "road", "irof"):
        assert report["methods"][0][key] == cli["methods"][0][key]


def test_evaluate_weight_noise_equals_the_cli(work):
    import prism_xai

    x = np.random.default_rng(2).random((3, 1, 28, 28)).astype(np.float32)
    options = dict(steps=2, patch_size=7, randomisation="none", no_plots=True,
                   weight_noise_samples=2, seed=5)
    report = prism_xai.evaluate(MODEL, x, work / "evalw", methods=["gradient"], progress=False,
                                weight_noise=[0.0, 0.5], weight_noise_draws=2, **options)
    wn = report["weight_noise"]
    assert wn["sigmas"] == [0.0, 0.5] and wn["draws"] == 2 and wn["scale"] == "absolute"
    assert wn["samples_used"] == 2
    assert wn["prediction_unchanged"][0] == 1.0
    levels = report["methods"][0]["weight_noise"]
    assert levels[0]["spearman"] == pytest.approx(1.0, abs=1e-9)
    assert levels[1]["spearman"] < levels[0]["spearman"]
    assert "same prediction" in report["table"]
    with pytest.raises(InvalidArgumentError, match="weight_noise"):
        _prism.evaluate(MODEL, x, work / "evalw", methods=["gradient"], weight_noise=[0.1, -0.1],
                        **options)
    with pytest.raises(InvalidArgumentError, match="weight_noise_draws"):
        _prism.evaluate(MODEL, x, work / "evalw", methods=["gradient"], weight_noise=0.1,
                        weight_noise_draws=0, **options)
    binary = prism_binary()
    if binary is None:
        return
    npy = work / "xw.npy"
    np.save(npy, x)
    subprocess.run(
        [str(binary), "evaluate", str(MODEL), str(npy), "-o", str(work / "cli-evalw"),
         "--methods", "gradient", "--steps", "2", "--patch-size", "7", "--randomisation",
         "none", "--no-plots", "--weight-noise", "0,0.5", "--weight-noise-draws", "2",
         "--weight-noise-samples", "2", "--seed", "5"],
        check=True, capture_output=True,
    )
    cli = json.loads((work / "cli-evalw" / "report.json").read_text())
    assert cli["weight_noise"] == wn
    assert cli["methods"][0]["weight_noise"] == levels
