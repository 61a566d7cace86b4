"""Shared fixtures of the prism-xai test suite: the repository's ONNX fixtures and the `prism`
binary, whose outputs the package must reproduce bit for bit."""

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[3]
FIXTURES = REPO / "tests" / "fixtures"


def _prism_binary():
    explicit = os.environ.get("PRISM_BIN")
    if explicit:
        return Path(explicit)
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    for profile in ("release", "debug"):
        candidate = target / profile / "prism"
        if candidate.exists():
            return candidate
    found = shutil.which("prism")
    return Path(found) if found else None


@pytest.fixture(scope="session")
def prism_bin():
    """The `prism` CLI (PRISM_BIN, else target/{release,debug}/prism)."""
    path = _prism_binary()
    if path is None or not path.exists():
        pytest.fail(
            "the prism binary is needed to compare with the CLI: run `cargo build --release` "
            "or set PRISM_BIN"
        )
    return path


@pytest.fixture(scope="session")
def run_cli(prism_bin):
    def run(*args):
        result = subprocess.run(
            [str(prism_bin), *map(str, args)], capture_output=True, text=True
        )
        if result.returncode != 0:
            raise AssertionError(f"prism {' '.join(map(str, args))} failed:\n{result.stderr}")
        return result

    return run


@pytest.fixture(scope="session")
def vgg():
    """A small VGG with BatchNorm (3×32×32 inputs) and a batch of inputs for it."""
    return FIXTURES / "tiny_vgg_bn.onnx", np.load(FIXTURES / "tiny_vgg_bn.input.npy")


@pytest.fixture(scope="session")
def resnet():
    return FIXTURES / "tiny_resnet.onnx", np.load(FIXTURES / "tiny_resnet.input.npy")


@pytest.fixture(scope="session")
def bert():
    """A small BERT-like encoder (legacy export): int64 token ids and an attention mask."""
    models = FIXTURES / "models"
    return (
        models / "bert.legacy.onnx",
        np.load(models / "bert.in0.npy"),
        np.load(models / "bert.in1.npy"),
    )
