"""Fit scikit-learn models on an ntkgram kernel file.

    python examples/sklearn_precomputed.py runs/quickstart/kernel.h5

The kernel file holds K(train, train) as /train/ntk and K(test, train) as /test/ntk, exactly
the matrices scikit-learn's `kernel="precomputed"` estimators take: fit on the train kernel,
predict from the cross kernel. Prints the test accuracy of an SVM and of kernel ridge
regression on one-hot targets.
"""
import sys

import h5py
import numpy as np
from sklearn.kernel_ridge import KernelRidge
from sklearn.svm import SVC


def main(path, kernel="ntk"):
    with h5py.File(path, "r") as f:
        k_train = f[f"/train/{kernel}"][...].astype(np.float64)
        k_test = f[f"/test/{kernel}"][...].astype(np.float64)
        y_train = f["/train/labels"][...]
        y_test = f["/test/labels"][...]
    svc = SVC(kernel="precomputed", C=10).fit(k_train, y_train)
    svc_accuracy = float((svc.predict(k_test) == y_test).mean())
    classes = np.unique(y_train)
    targets = (y_train[:, None] == classes[None, :]).astype(np.float64)
    ridge = 1e-3 * np.trace(k_train) / k_train.shape[0]
    krr = KernelRidge(kernel="precomputed", alpha=ridge).fit(k_train, targets)
    krr_accuracy = float((classes[krr.predict(k_test).argmax(axis=1)] == y_test).mean())
    print(f"SVC(kernel='precomputed', C=10) test accuracy: {svc_accuracy:.4f}")
    print(f"KernelRidge(kernel='precomputed', alpha={ridge:.3g}) test accuracy: {krr_accuracy:.4f}")
    return svc_accuracy, krr_accuracy


if __name__ == "__main__":
    main(sys.argv[1], *(sys.argv[2:3]))
