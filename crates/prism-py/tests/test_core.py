"""The extension's core (`prism_xai._prism`): predict, explain and heatmaps give the `prism` CLI's
numbers bit for bit, accept any float dtype and memory layout, release the GIL, stop on Ctrl-C,
and raise the right exceptions."""

import os
import signal
import struct
import threading
import time
import zlib

import numpy as np
import pytest

import prism_xai
from prism_xai import _prism


def cli_explain(run_cli, tmp_path, model, x_or_inputs, *flags):
    out = tmp_path / "r.npy"
    if isinstance(x_or_inputs, dict):
        args = []
        for name, arr in x_or_inputs.items():
            p = tmp_path / f"{name}.npy"
            np.save(p, arr)
            args += ["--input", f"{name}={p}"]
    else:
        p = tmp_path / "x.npy"
        np.save(p, x_or_inputs)
        args = [p]
    run_cli("explain", model, *args, "--output", out, *flags)
    return np.load(out)


METHODS = [
    ({}, []),
    (
        {"composite": "epsilon-gamma-box", "low": -3.0, "high": 3.0},
        ["--composite", "epsilon-gamma-box", "--low", "-3", "--high", "3"],
    ),
    ({"composite": "epsilon-plus-flat"}, ["--composite", "epsilon-plus-flat"]),
    (
        {"composite": "epsilon-alpha2-beta1", "epsilon": 0.5, "canonize": False},
        ["--composite", "epsilon-alpha2-beta1", "--epsilon", "0.5", "--no-canonize"],
    ),
    (
        {"attributor": "smoothgrad", "n_iter": 3, "noise_level": 0.2, "seed": 7},
        ["--attributor", "smoothgrad", "--n-iter", "3", "--noise-level", "0.2", "--seed", "7"],
    ),
    (
        {"attributor": "occlusion", "window": 4, "stride": 4},
        ["--attributor", "occlusion", "--window", "4", "--stride", "4"],
    ),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("method,flags", METHODS)
def test_explain_is_the_cli_bit_for_bit(run_cli, tmp_path, vgg, method, flags, dtype):
    path, x = vgg
    model = _prism.Model(path)
    r, targets, at, _ = model.explain(x, dtype=dtype, method=method, batch_size=1)
    expected = cli_explain(run_cli, tmp_path, path, x, "--dtype", dtype[:1] + dtype[-2:], "--batch-size", "1", *flags)
    assert r.dtype == np.dtype(dtype)
    assert r.shape == x.shape
    assert np.array_equal(r, expected), np.abs(r - expected).max()
    assert targets.dtype == np.int64 and targets.shape == (len(x),)
    assert at == model.inputs[0]["name"]


def test_target_forms(vgg):
    path, x = vgg
    model = _prism.Model(path)
    logits = model.predict(x)
    _, predicted, _, _ = model.explain(x)
    assert list(predicted) == list(logits.argmax(1))
    r3, t3, _, _ = model.explain(x, target=3)
    assert list(t3) == [3] * len(x)
    labels = np.array([1, 2])
    r_l, t_l, _, _ = model.explain(x, target=labels)
    assert list(t_l) == [1, 2]
    r_1, _, _, _ = model.explain(x[1:], target=2)
    assert np.array_equal(r_l[1], r_1[0])
    with pytest.raises(ValueError, match="labels for 2 samples"):
        model.explain(x, target=np.array([1, 2, 3]))
    with pytest.raises(ValueError, match="negative"):
        model.explain(x, target=-1)
    with pytest.raises(ValueError, match="integers"):
        model.explain(x, target=np.array([1.0, 2.0]))


def test_predict_is_the_cli_bit_for_bit(run_cli, tmp_path, resnet):
    path, x = resnet
    np.save(tmp_path / "x.npy", x)
    for dtype in ("f32", "f64"):
        run_cli("predict", path, tmp_path / "x.npy", "--output", tmp_path / "y.npy", "--dtype", dtype, "--top-k", "0")
        y = _prism.Model(path).predict(x, dtype="float" + dtype[1:], batch_size=1)
        assert np.array_equal(y, np.load(tmp_path / "y.npy"))


def test_token_model_per_token_is_the_cli(run_cli, tmp_path, bert):
    path, ids, mask = bert
    model = _prism.Model(path)
    assert [i["name"] for i in model.inputs] == ["input_ids", "attention_mask"]
    assert model.inputs[0]["dtype"] == "int64"
    inputs = {"input_ids": ids, "attention_mask": mask}
    r, targets, at, _ = model.explain(inputs, method={"composite": "attn-lrp"}, target=0)
    expected = cli_explain(run_cli, tmp_path, path, inputs, "--composite", "attn-lrp", "--target", "0")
    assert r.shape == ids.shape + (16,)  # [N, tokens, hidden] by default
    per_token, _, _, _ = model.explain(inputs, method={"composite": "attn-lrp"}, target=0, reduce_hidden="sum")
    assert per_token.shape == ids.shape
    np.testing.assert_allclose(per_token, r.sum(-1), rtol=1e-5, atol=1e-6)
    assert np.array_equal(r, expected)
    assert "Gather" in at or at  # the embedding lookup's output
    # int32 ids work the same
    r32, _, _, _ = model.explain({"input_ids": ids.astype(np.int32), "attention_mask": mask}, method={"composite": "attn-lrp"}, target=0)
    assert np.array_equal(r, r32)
    with pytest.raises(ValueError, match="pass a dict"):
        model.explain(ids)
    with pytest.raises(ValueError, match="missing inputs attention_mask"):
        model.explain({"input_ids": ids})
    with pytest.raises(ValueError, match="not floats"):
        model.explain({"input_ids": ids.astype(np.float32), "attention_mask": mask})


def test_any_float_dtype_and_layout(vgg):
    path, x = vgg
    model = _prism.Model(path)
    method = {"composite": "epsilon-plus-flat"}
    ref, _, _, _ = model.explain(x, method=method)
    fortran = np.asfortranarray(x)
    strided = np.stack([x, x], axis=-1)[..., 0]
    assert not strided.flags.c_contiguous
    for variant in (fortran, x.astype(np.float64), strided.copy(order="C")):
        r, _, _, _ = model.explain(variant, method=method)
        assert np.array_equal(r, ref)
    r_view, _, _, _ = model.explain(strided, method=method)
    r_copy, _, _, _ = model.explain(np.ascontiguousarray(strided), method=method)
    assert np.array_equal(r_view, r_copy)
    half = x.astype(np.float16)
    r16, _, _, _ = model.explain(half, method=method)
    r16_ref, _, _, _ = model.explain(half.astype(np.float32), method=method)
    assert np.array_equal(r16, r16_ref)
    listed, _, _, _ = model.explain(x.tolist(), method=method)
    assert np.allclose(listed, ref)


def test_threads_do_not_change_numbers(vgg):
    path, x = vgg
    model = _prism.Model(path)
    ref, _, _, _ = model.explain(x, method={"composite": "epsilon-gamma-box", "low": -3.0, "high": 3.0})
    try:
        _prism.set_num_threads(1)
        assert _prism.get_num_threads() == 1
        r, _, _, _ = model.explain(x, method={"composite": "epsilon-gamma-box", "low": -3.0, "high": 3.0})
    finally:
        _prism.set_num_threads(None)
    assert np.array_equal(r, ref)


def _long_input(model, x, seconds):
    """x repeated until one explain call (in batches of 1) takes about `seconds`."""
    reps = 1
    while True:
        big = np.repeat(x, reps, axis=0)
        start = time.perf_counter()
        model.explain(big, method={"composite": "epsilon-plus-flat"}, batch_size=1)
        took = time.perf_counter() - start
        if took >= seconds / 8 or reps > 4096:
            return np.repeat(x, max(reps, int(reps * seconds / took)), axis=0)
        reps *= 4


def test_gil_is_released(resnet):
    path, x = resnet
    model = _prism.Model(path)
    big = _long_input(model, x, 0.5)

    def one_call(inputs):
        ticks = []
        done = threading.Event()

        def tick():
            while not done.is_set():
                ticks.append(time.perf_counter())
                time.sleep(0.005)

        t = threading.Thread(target=tick)
        t.start()
        start = time.perf_counter()
        try:
            model.explain(inputs, method={"composite": "epsilon-plus-flat"}, batch_size=len(inputs))
        finally:
            done.set()
            t.join()
        elapsed = time.perf_counter() - start
        return elapsed, [s for s in ticks if start < s < start + elapsed]

    # one batch runs faster per sample than the batches of 1 that sized it: grow the batch until
    # the call is long enough for the ticker to show whether it ran
    elapsed, during = one_call(big)
    while elapsed < 0.2 and len(big) < 1 << 16:
        big = np.concatenate([big, big], axis=0)
        elapsed, during = one_call(big)
    assert elapsed >= 0.2, f"a batch of {len(big)} took only {elapsed:.3f} s"
    # one batch, one library call: with the GIL held the ticker would be frozen throughout
    assert len(during) >= 0.5 * elapsed / 0.005 * 0.2


@pytest.mark.parametrize("threads", [None, 1])
def test_ctrl_c_interrupts_between_batches(resnet, threads):
    path, x = resnet
    model = _prism.Model(path)
    _prism.set_num_threads(threads)
    big = _long_input(model, x, 3.0)
    finished = []
    timer = threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT))
    start = time.perf_counter()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            model.explain(big, method={"composite": "epsilon-plus-flat"}, batch_size=1)
            finished.append(time.perf_counter() - start)
            time.sleep(10)  # lets the signal land, so that the assertion below reports it
    finally:
        timer.cancel()
        _prism.set_num_threads(None)
    assert not finished, f"explain ran to the end ({finished[0]:.2f} s) despite Ctrl-C"
    assert time.perf_counter() - start < 2.5


def test_errors_map_to_exceptions(tmp_path, vgg):
    path, x = vgg
    with pytest.raises(FileNotFoundError) as e:
        _prism.Model(tmp_path / "missing.onnx")
    assert isinstance(e.value, prism_xai.PrismError)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(prism_xai.ModelError, match="not a valid ONNX model"):
        _prism.Model(bad)
    model = _prism.Model(path)
    with pytest.raises(ValueError, match="unknown option `epsilom`"):
        model.explain(x, method={"epsilom": 1.0})
    with pytest.raises(prism_xai.InvalidArgumentError, match="unknown composite"):
        model.explain(x, method={"composite": "nope"})
    with pytest.raises(FileNotFoundError):
        model.explain(x, method={"composite_file": str(tmp_path / "none.toml")})
    with pytest.raises(ValueError, match="must be a float"):
        model.explain(x, method={"epsilon": "big"})
    with pytest.raises(ValueError):
        model.explain(x[:, :2])  # wrong channel count
    with pytest.raises(ValueError, match="not integers"):
        model.explain(x.astype(np.int64))
    with pytest.raises(ValueError, match="batch of samples"):
        model.explain(x[0, 0, 0, 0])
    with pytest.raises(ValueError, match="dtype"):
        model.explain(x, dtype="float16")
    with pytest.raises(ValueError, match="batch size"):
        model.predict(x, batch_size=0)


def _png_pixels(data):
    """Decodes an 8-bit non-interlaced RGB or palette PNG (what Prism writes) to H×W×3."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, palette = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and colour in (2, 3)
        elif kind == b"PLTE":
            palette = np.frombuffer(body, np.uint8).reshape(-1, 3)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    bpp = 3 if colour == 2 else 1
    stride = width * bpp
    out = np.zeros((height, stride), np.int32)
    for y in range(height):
        f, line = raw[y * (stride + 1)], np.frombuffer(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)], np.uint8).astype(np.int32)
        prev = out[y - 1] if y else np.zeros(stride, np.int32)
        cur = np.zeros(stride, np.int32)
        for i in range(stride):
            a = cur[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 0:
                p = 0
            elif f == 1:
                p = a
            elif f == 2:
                p = b
            elif f == 3:
                p = (a + b) // 2
            else:
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                p = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            cur[i] = (line[i] + p) & 0xFF
        out[y] = cur
    out = out.astype(np.uint8)
    if colour == 3:
        return palette[out]
    return out.reshape(height, width, 3)


@pytest.mark.parametrize("flags,kwargs", [
    ([], {}),
    (["--cmap", "coldnhot", "--symmetric"], {"cmap": "coldnhot", "symmetric": True}),
    (["--cmap", "gray", "--absolute", "--level", "2"], {"cmap": "gray", "absolute": True, "level": 2.0}),
])
def test_heatmaps_are_the_cli_pixels(run_cli, tmp_path, vgg, flags, kwargs):
    path, x = vgg
    r, _, _, _ = _prism.Model(path).explain(x, method={"composite": "epsilon-plus-flat"})
    np.save(tmp_path / "r.npy", r)
    run_cli("heatmap", tmp_path / "r.npy", "--output", tmp_path / "png", *flags)
    images = _prism.render(r, **kwargs)
    assert len(images) == len(x)
    for k, image in enumerate(images):
        assert image.dtype == np.uint8 and image.shape == (16, 16, 3)
        expected = _png_pixels((tmp_path / "png" / f"{k:03d}.png").read_bytes())
        assert np.array_equal(image, expected)
        assert np.array_equal(_png_pixels(_prism.encode_png(image)), image)
    g = _prism.grid(images, (1, 2))
    assert g.shape[2] == 3 and g.shape[1] >= 32
    o = _prism.overlay(r, x)
    assert len(o) == 2 and o[0].shape == (16, 16, 3)
    assert "bwr" in [m[0] for m in _prism.colormaps()]
    with pytest.raises(ValueError, match="colour map"):
        _prism.render(r, cmap="no-such-map")
    with pytest.raises(ValueError, match="finite"):
        _prism.render(np.full((1, 4, 4), np.nan, np.float32))


def test_nonfinite_inputs_and_results(tmp_path):
    """NaN/Inf inputs are a ValueError naming the samples; a result that stops being finite
    from finite inputs is a ModelError naming the node; allow_nonfinite=True lets both through."""
    from pathlib import Path

    fix = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "nonfinite"
    model = prism_xai.Model(fix / "sqrt_head.onnx")
    assert model.allow_nonfinite is False
    nan = np.load(fix / "nan.npy")
    with pytest.raises(prism_xai.InvalidArgumentError, match=r"samples 1, 3"):
        model.predict(nan)
    with pytest.raises(ValueError, match=r"allow_nonfinite=True"):
        model.explain(nan, target=0, composite="epsilon-plus")
    with pytest.raises(prism_xai.ModelError, match=r"node 'sqrt_head' \(Sqrt\)"):
        model.predict(np.load(fix / "negative.npy"))
    allowed = prism_xai.Model(fix / "sqrt_head.onnx", allow_nonfinite=True)
    assert allowed.allow_nonfinite is True
    y = allowed.predict(nan)
    assert np.isnan(y[1, 0]) and np.isfinite(y[0]).all()
    with pytest.raises(prism_xai.ModelError, match=r"gradient rule at node 'sqrt_head'"):
        model.explain(np.load(fix / "sqrt_zero.npy"), target=2)


CRP = os.path.join(os.path.dirname(__file__), "..", "..", "..", "tests", "fixtures", "crp")


def test_explain_concepts_is_the_cli(run_cli, tmp_path):
    """CRP conditions and recording: the CLI's numbers and record folder, bit for bit."""
    import json

    model_path = os.path.join(CRP, "crp_resnet.onnx")
    x = np.load(os.path.join(CRP, "crp_resnet.input.npy"))
    model = prism_xai.Model(model_path)
    conds = ["/layer/layer.1/conv2/Conv:4,9", "/layer/layer.1/conv2/Conv:0-3"]
    out = model.explain_concepts(
        x, 1, composite="epsilon-plus-flat", dtype="float64", conditions=conds,
        record=["/layer/*/conv2/Conv"], top_k=3, exclude_parallel=True,
    )
    flags = ["--composite", "epsilon-plus-flat", "--dtype", "f64", "--target", "1",
             "--record", "/layer/*/conv2/Conv", "--record-top-k", "3", "--exclude-parallel"]
    for c in conds:
        flags += ["--condition", c]
    expected = cli_explain(run_cli, tmp_path, model_path, x, *flags)
    assert out["rows_per_sample"] == 2
    assert out["relevance"].shape == (4, 3, 16, 16)
    assert np.array_equal(out["relevance"], expected)
    index = json.load(open(tmp_path / "r.record" / "index.json"))
    assert [n["node"] for n in index["nodes"]] == list(out["recorded"])
    for n in index["nodes"]:
        rec = out["recorded"][n["node"]]
        for key in ["relevance", "activation", "top_channels", "top_share"]:
            assert np.array_equal(rec[key], np.load(tmp_path / "r.record" / n[key])), key
        assert rec["top_channels"].shape == (4, 3)
    with pytest.raises(prism_xai.InvalidArgumentError, match="channel 16 does not exist"):
        model.explain_concepts(x, 1, conditions=["/layer/layer.1/conv2/Conv:16"])
    with pytest.raises(prism_xai.InvalidArgumentError, match="expected LAYER:ch,ch"):
        model.explain_concepts(x, 1, conditions=["conv"])
