"""The body mask (medseg.core.pipeline.segment.body_mask): nothing outside the patient is called."""

import numpy as np
import torch

from medseg.core.pipeline.segment import body_mask, segment
from medseg.core.pipeline.spec import PipelineSpec
from medseg.core.volume import Volume


def _ct() -> np.ndarray:
    """Air, a patient (an elliptic cylinder of soft tissue with two lungs and an airway open to the
    top of the scan), and a table apart from the patient, in canonical (S, P, L) order."""
    hu = np.full((30, 80, 80), -1000.0, np.float32)
    rr, cc = np.mgrid[0:80, 0:80]
    patient = ((rr - 38) / 28.0) ** 2 + ((cc - 40) / 34.0) ** 2 <= 1
    hu[:, patient] = 40.0
    for centre in (25, 55):
        lung = ((rr - 36) / 14.0) ** 2 + ((cc - centre) / 10.0) ** 2 <= 1
        hu[:, lung] = -850.0
    hu[:8, 30:42, 38:42] = -1000.0  # the airway: open to the edge of the volume at slice 0
    hu[:, 72:76, 5:75] = 200.0  # the table, 6 voxels below the patient
    return hu


def test_the_body_is_the_largest_component_with_lungs_and_airway_inside():
    hu = _ct()
    body = body_mask(hu, -500.0)[0, 0].numpy().astype(bool)
    assert body[15, 36, 25] and body[15, 36, 55]  # lungs: holes of each slice, filled
    assert body[3, 35, 40]  # the airway, inside the chest wall of its slice
    assert not body[15, 74, 40]  # the table
    assert not body[15, 2, 2] and not body[15, 79, 79]  # air
    assert body_mask(np.full((4, 5, 5), -1000.0, np.float32), -500.0).all()  # nothing above: no mask


def test_a_model_firing_everywhere_is_called_only_inside_the_patient():
    hu = _ct()
    # axial slices: index (k, r, c) -> LPS (c, r, k); the mask commutes with the axis flips that
    # canonical orientation may apply, so it can be compared on the source grid
    affine = np.array([[0, 0, 1.0, 0], [0, 1.0, 0, 0], [1.0, 0, 0, 0], [0, 0, 0, 1]])
    volume = Volume(hu, affine)

    def everywhere(x: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros((x.shape[0], 2, *x.shape[2:]))
        logits[:, 1] = 5.0
        return logits

    spec = dict(spacing_zyx=(1.0, 1.0, 1.0), window_hu=(-1000.0, 1000.0), roi_size=(16, 32, 32), crop_body=False,
                min_lesion_ml=0.0)
    plain = segment(volume, everywhere, PipelineSpec(**spec)).mask.array.astype(bool)
    masked = segment(volume, everywhere, PipelineSpec(**spec, body_mask=True)).mask.array.astype(bool)
    assert plain.all()
    body = body_mask(hu, -500.0)[0, 0].numpy().astype(bool)
    assert np.array_equal(masked, body)
    assert not masked[:, 72:76].any()  # not the table
