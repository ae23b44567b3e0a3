"""Condensation: effective orientations of the first layer's units at the start and at each
algorithm's end points (:func:`~smetool.analysis.condensation.unit_orientations`).

Finding ``condensation``: ``count_A − count_GD < 0`` per seed (dropout condenses the units onto
fewer orientations, Zhang & Xu, TPAMI 2024). Control: the differences with random signs. Runs
where the landscape has units (a network).

References
----------
Z. Zhang, Z.-Q. J. Xu, "Implicit regularization of dropout", IEEE TPAMI 46(6), 2024.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from ...bibliography import ZHANG_XU_2024_IMPLICIT
from ..condensation import cosine_similarity, unit_orientations
from ..figures import figure
from ..findings import decide_with_control, sign_flipped
from ..measure import Measure, Measurement
from ..study import Study

__all__ = ["Condensation", "MEASURE"]


class Condensation(Measure):
    """Effective orientations per algorithm (module docstring)."""

    name = "condensation"
    title = "condensation: effective orientations of the first layer's units"
    studies = frozenset({"analyze"})
    order = 40
    references = (ZHANG_XU_2024_IMPLICIT,)

    def applies(self, study: Study) -> bool:
        return study.landscape.units(study.inits[:1]) is not None

    def run(self, study: Study) -> Measurement:
        ends = {"initial": study.inits, **{label: study.final(label) for label in study.algorithms}}
        units, orient = {}, {}
        for key, theta in ends.items():
            u = study.landscape.units(theta)
            assert u is not None  # applies() checked it
            units[key] = u
            orient[key] = unit_orientations(u.weights, u.amplitude,
                                            threshold=study.settings.threshold,
                                            antipodal=u.antipodal)
        ref = study.reference
        findings = {}
        for label in study.others:
            d = (orient[label].count - orient[ref].count).double()
            findings[label] = {"condensation": decide_with_control(
                "condensation", f"{label} yields fewer effective orientations than {ref}", d, -1,
                sign_flipped(d, study.generator(self.name, label)),
                detail=f"orientations {label} {orient[label].count.tolist()}, {ref} "
                f"{orient[ref].count.tolist()}, initial {orient['initial'].count.tolist()} "
                f"(cos > {study.settings.threshold:g}); difference")}
        data = {key: o.to_dict() for key, o in orient.items()}
        return Measurement(self.name, data, findings, {"units": units, "orientations": orient})

    def figure(self, measurement: Measurement, study: Study, path: Path) -> bool:
        units, orient = measurement.objects["units"], measurement.objects["orientations"]
        keys = list(units)
        fig, axes = figure(len(keys), size=(3.3, 3.0))
        im = None
        for ax, key in zip(axes[0], keys):
            W = units[key].weights[:1]
            cos = cosine_similarity(W)[0].cpu().numpy()
            if W.shape[-1] == 2:  # sort by orientation (mod π: antipodal = same line)
                order = np.argsort(np.mod(torch.atan2(W[0, :, 1], W[0, :, 0]).numpy(), math.pi))
                cos = cos[np.ix_(order, order)]
            im = ax.imshow(cos, vmin=-1, vmax=1, cmap="RdBu_r")
            ax.set_title(f"{key}: {int(orient[key].count[0])} orientations (seed 0)", fontsize=8)
            ax.set_xlabel("unit", fontsize=7)
        fig.colorbar(im, ax=axes[0, -1], shrink=0.8, label="cosine similarity")
        fig.savefig(path, dpi=100)
        return True


MEASURE = Condensation()
