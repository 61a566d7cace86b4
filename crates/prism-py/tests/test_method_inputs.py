"""The richer method inputs through the `method` dict (issue 18): the new attributors, the
baseline forms, Captum's noise and the occlusion fill equal the CLI's flags bit for bit, and
their errors are `InvalidArgumentError`s that say what is accepted."""

import numpy as np
import pytest

import prism_xai
from prism_xai import _prism

from conftest import FIXTURES

INPUTS = FIXTURES / "inputs"

METHODS = [
    ({"attributor": "input-x-gradient"}, ["--attributor", "input-x-gradient"]),
    (
        {"attributor": "vargrad", "n_iter": 3, "noise_level": 0.2, "absolute_noise": True, "seed": 5},
        ["--attributor", "vargrad", "--n-iter", "3", "--noise-level", "0.2", "--absolute-noise", "--seed", "5"],
    ),
    ({"attributor": "smoothgrad-squared", "n_iter": 2}, ["--attributor", "smoothgrad-squared", "--n-iter", "2"]),
    (
        {"attributor": "integrated-gradients", "n_iter": 4, "baseline": "blur:1.5"},
        ["--attributor", "integrated-gradients", "--n-iter", "4", "--baseline", "blur:1.5"],
    ),
    (
        {"attributor": "integrated-gradients", "n_iter": 3, "baseline": "uniform:2", "seed": 3},
        ["--attributor", "integrated-gradients", "--n-iter", "3", "--baseline", "uniform:2", "--seed", "3"],
    ),
    (
        {"attributor": "integrated-gradients", "n_iter": 3, "baseline": str(INPUTS / "baseline_per_sample.npy")},
        ["--attributor", "integrated-gradients", "--n-iter", "3", "--baseline", str(INPUTS / "baseline_per_sample.npy")],
    ),
    (
        {"attributor": "occlusion", "window": 4, "stride": 4, "occlusion_fill": "blur:2"},
        ["--attributor", "occlusion", "--window", "4", "--stride", "4", "--occlusion-fill", "blur:2"],
    ),
    ({"attributor": "random", "seed": 11}, ["--attributor", "random", "--seed", "11"]),
    ({"composite": "lrp-sequential-preset-b-flat"}, ["--composite", "lrp-sequential-preset-b-flat"]),
]


@pytest.mark.parametrize("method,flags", METHODS)
def test_method_dict_equals_the_cli(run_cli, tmp_path, method, flags):
    path = INPUTS / "cnn.onnx"
    x = np.load(INPUTS / "cnn.input.npy")
    inp, out = tmp_path / "x.npy", tmp_path / "r.npy"
    np.save(inp, x)
    run_cli("explain", str(path), str(inp), "-o", str(out), "--dtype", "f64", "--batch-size", "1", *flags)
    expected = np.load(out)
    r, _, _, _ = _prism.Model(path).explain(x, dtype="float64", method=method, batch_size=1)
    assert np.array_equal(r, expected), np.abs(r - expected).max()


def test_contrast_and_single_logit_targets():
    model = _prism.Model(INPUTS / "cnn.onnx")
    x = np.load(INPUTS / "cnn.input.npy")
    r, targets, _, _ = model.explain(x, dtype="float64", target="2-0")
    assert np.allclose(r, np.load(INPUTS / "target_contrast.npy"), rtol=0, atol=1e-9)
    assert list(targets) == [2, 2, 2]
    logit = _prism.Model(INPUTS / "logit.onnx")
    xl = np.load(INPUTS / "logit.input.npy")
    r, _, _, _ = logit.explain(xl, dtype="float64", target="negative")
    assert np.allclose(r, np.load(INPUTS / "target_negative.npy"), rtol=0, atol=1e-9)
    with pytest.raises(prism_xai.InvalidArgumentError, match=r"single logit.*\[3, 4\]"):
        model.explain(x, target="negative")


@pytest.mark.parametrize(
    "method,message",
    [
        ({"attributor": "integrated-gradients", "baseline": "blurry"}, r"uniform\[:K\]"),
        ({"attributor": "integrated-gradients", "baseline": [1, 2]}, r"blur\[:SIGMA\]"),
        ({"attributor": "occlusion", "occlusion_fill": "fog"}, r"blur\[:SIGMA\]"),
        ({"attributor": "gradient", "absolute_noise": True}, r"smoothgrad"),
        ({"attributor": "integrated-gradients", "baseline": "missing.npy"}, r"missing\.npy"),
    ],
)
def test_bad_method_inputs_are_refused(method, message):
    model = _prism.Model(INPUTS / "cnn.onnx")
    x = np.load(INPUTS / "cnn.input.npy")
    with pytest.raises((prism_xai.InvalidArgumentError, FileNotFoundError), match=message):
        model.explain(x, method=method)
