"""The scikit-learn example runs on a real Fashion-MNIST kernel file."""
import os
import runpy
import sys

from conftest import ROOT, ntkgram


def test_sklearn_precomputed_example(tmp_path):
    images = "/usr/share/datasets/fashion-mnist/"
    ntkgram("build", "--train", images + "train-images-idx3-ubyte.gz", "--train-labels", images + "train-labels-idx1-ubyte.gz",
            "--test", images + "t10k-images-idx3-ubyte.gz", "--test-labels", images + "t10k-labels-idx1-ubyte.gz",
            "--train-limit", 1500, "--test-limit", 500, "--out", tmp_path / "k.h5", "--quiet")
    sys.path.insert(0, os.path.join(ROOT, "examples"))
    example = runpy.run_path(os.path.join(ROOT, "examples", "sklearn_precomputed.py"))
    svc, krr = example["main"](str(tmp_path / "k.h5"))
    # 1,500 training images: far above chance (0.1), near what an RBF SVM gets on this size.
    assert svc > 0.75 and krr > 0.75
