"""Class activation maps from Python: `Model.explain(x, attributor="grad-cam", layer=...)`
on the pytorch-grad-cam fixtures (tests/fixtures/cam, scripts/make_cam_fixtures.py) must give
pytorch-grad-cam 1.5's maps (the numbers `cargo test --test cam_reference` checks), in the
shape N × 1 × H × W; `layer` names the layer; bad layers raise.
"""

import json
from pathlib import Path

import numpy as np
import pytest

import prism_xai
from prism_xai._errors import PrismError

FIXTURES = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "cam"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())


@pytest.mark.parametrize("method", ["grad-cam", "layer-cam", "score-cam", "ablation-cam"])
def test_maps_match_pytorch_grad_cam(method):
    layer = MANIFEST["models"]["cam_vgg"]["layers"][0]
    x = np.load(FIXTURES / "cam_vgg.input.npy")
    model = prism_xai.Model(FIXTURES / "cam_vgg.onnx")
    got = model.explain(x, target=np.array(MANIFEST["labels"]),
                        attributor=method, layer=layer["node"])
    want = np.load(FIXTURES / layer["files"][f"{method}__labels"])
    assert got.shape == (x.shape[0], 1, x.shape[2], x.shape[3])
    np.testing.assert_allclose(got[:, 0], want, atol=5e-5)


def test_default_layer_and_bad_layer():
    x = np.load(FIXTURES / "cam_resnet.input.npy")
    model = prism_xai.Model(FIXTURES / "cam_resnet.onnx")
    layer = next(l for l in MANIFEST["models"]["cam_resnet"]["layers"] if l["default"])
    got = model.explain(x, attributor="grad-cam")
    want = np.load(FIXTURES / layer["files"]["grad-cam__predicted"])
    np.testing.assert_allclose(got[:, 0], want, atol=5e-5)
    with pytest.raises(PrismError, match="no node or tensor named 'nope'"):
        model.explain(x, attributor="grad-cam", layer="nope")
