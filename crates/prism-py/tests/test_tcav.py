"""TCAV from Python: `prism_xai.tcav(...)` on the Captum fixtures (tests/fixtures/tcav,
scripts/make_tcav_fixtures.py) returns the report `prism tcav` writes, number for number; f64 passes give f32's sign counts; bad
arguments raise. (The numbers against Captum: `cargo test -p prism-jobs --test tcav`.)
"""

import json
from pathlib import Path

import pytest

import prism_xai
from prism_xai._errors import InvalidArgumentError, PrismError

FIXTURES = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "tcav"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())
SETS = FIXTURES / "sets"
MODEL = FIXTURES / "tcav_cnn.onnx"


def _concepts():
    return {c: SETS / c for c in MANIFEST["concepts"]}


def _randoms():
    return [SETS / r for r in MANIFEST["randoms"]]


def test_tcav_report_equals_the_clis(tmp_path, run_cli):
    out, png = tmp_path / "py.json", tmp_path / "py.png"
    report = prism_xai.tcav(MODEL, MANIFEST["layer"], 0, _concepts(), _randoms(),
                            SETS / "inputs", output=out, plot=png, seed=2)
    assert json.loads(out.read_text()) == report
    assert png.read_bytes()[1:4] == b"PNG"
    cli = tmp_path / "cli.json"
    args = ["tcav", "--model", str(MODEL), "--layer", MANIFEST["layer"], "--target", "0",
            "--inputs", str(SETS / "inputs"), "-o", str(cli), "--seed", "2"]
    for name, path in _concepts().items():
        args += ["--concept", f"{name}={path}"]
    for path in _randoms():
        args += ["--random", str(path)]
    run_cli(*args)
    want = json.loads(cli.read_text())
    for key in ["concepts", "random_baseline", "alpha_corrected", "layer_shape", "warnings"]:
        assert report[key] == want[key], key
    assert [c["name"] for c in report["concepts"]] == ["striped", "checkered"]
    assert report["correction"] == "bonferroni"
    for c in report["concepts"]:
        assert len(c["runs"]) == len(MANIFEST["randoms"])
        assert c["test"]["significant"] == (c["test"]["p_value"] < report["alpha_corrected"])


def test_f64_gives_the_sign_counts_of_f32():
    # (name, path) pairs work as well as a dict
    a = prism_xai.tcav(MODEL, MANIFEST["layer"], 0, _concepts(), _randoms(), SETS / "inputs")
    b = prism_xai.tcav(MODEL, MANIFEST["layer"], 0, list(_concepts().items()), _randoms(),
                       SETS / "inputs", dtype="f64")
    signs = lambda r: [x["sign_count"] for c in r["concepts"] for x in c["runs"]]
    assert signs(a) == signs(b)
    assert b["dtype"] == "f64"


def test_bad_arguments_raise():
    with pytest.raises(InvalidArgumentError, match="no node or tensor named '/nope'"):
        prism_xai.tcav(MODEL, "/nope", 0, _concepts(), _randoms(), SETS / "inputs")
    with pytest.raises(InvalidArgumentError, match="target class 9"):
        prism_xai.tcav(MODEL, MANIFEST["layer"], 9, _concepts(), _randoms(), SETS / "inputs")
    with pytest.raises(InvalidArgumentError, match="at least 2 random sets"):
        prism_xai.tcav(MODEL, MANIFEST["layer"], 0, _concepts(), _randoms()[:1],
                       SETS / "inputs")
    with pytest.raises(PrismError, match="missing"):
        prism_xai.tcav(MODEL, MANIFEST["layer"], 0, {"x": SETS / "missing"}, _randoms(),
                       SETS / "inputs")
    with pytest.raises(InvalidArgumentError, match="unknown option `sed`"):
        prism_xai.tcav(MODEL, MANIFEST["layer"], 0, _concepts(), _randoms(), SETS / "inputs",
                       sed=1)
