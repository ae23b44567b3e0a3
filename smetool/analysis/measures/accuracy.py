"""Test accuracy: the share of held-out points each algorithm's end points classify correctly.

Finding ``test_accuracy``: ``acc_A − acc_GD > 0`` per seed on data the algorithms did not train on
(the flatter-minima-generalise-better argument of the dropout and SAM papers, measured). Control:
the differences with random signs. Runs where the study has held-out data and the landscape is a
classifier.

References
----------
Z. Zhang, Z.-Q. J. Xu, IEEE TPAMI 46(6), 2024; P. Foret, A. Kleiner, H. Mobahi, B. Neyshabur,
ICLR 2021.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...bibliography import FORET_2021_SAM, ZHANG_XU_2024_IMPLICIT
from ..figures import figure, per_algorithm
from ..findings import decide_with_control, sign_flipped
from ..measure import Measure, Measurement
from ..study import Study

__all__ = ["TestAccuracy", "MEASURE"]


class TestAccuracy(Measure):
    """Training and test accuracy per algorithm (module docstring)."""

    name = "accuracy"
    title = "test accuracy on held-out data"
    order = 60
    references = (ZHANG_XU_2024_IMPLICIT, FORET_2021_SAM)

    def applies(self, study: Study) -> bool:
        return study.test is not None and study.test.accuracy(study.inits[:1]) is not None

    def run(self, study: Study) -> Measurement:
        test, train = {}, {}
        for label in study.algorithms:
            on_test = study.test.accuracy(study.final(label)) if study.test is not None else None
            on_train = study.landscape.accuracy(study.final(label))
            assert on_test is not None and on_train is not None  # applies() checked it
            test[label], train[label] = on_test, on_train
        ref = study.reference
        findings = {}
        for label in study.others:
            d = test[label] - test[ref]
            findings[label] = {"test_accuracy": decide_with_control(
                "test_accuracy", f"{label} classifies held-out data better than {ref}", d, +1,
                sign_flipped(d, study.generator(self.name, label)),
                detail=f"test accuracy {label} {float(test[label].mean()):.3f} vs {ref} "
                f"{float(test[ref].mean()):.3f} (training {float(train[label].mean()):.3f} vs "
                f"{float(train[ref].mean()):.3f}); per-seed difference")}
        data = {label: {"test": test[label], "train": train[label]} for label in study.algorithms}
        return Measurement(self.name, data, findings)

    def columns(self, measurement: Measurement) -> dict[str, dict[str, Any]]:
        return {"test accuracy": {k: v["test"] for k, v in measurement.data.items()}}

    def figure(self, measurement: Measurement, study: Study, path: Path) -> bool:
        labels = list(study.algorithms)
        fig, axes = figure(size=(0.9 * len(labels) + 2.4, 3.4))
        per_algorithm(axes[0, 0], labels, {k: v["test"] for k, v in measurement.data.items()},
                      "test accuracy", f"accuracy on {study.test.label if study.test else ''}")
        fig.savefig(path, dpi=100)
        return True


MEASURE = TestAccuracy()
