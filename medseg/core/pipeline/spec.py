"""What the pipeline needs from a model manifest, as a frozen value (imports no torch).

:meth:`medseg.models.manifest.ModelManifest.pipeline_spec` builds it; :func:`medseg.core.pipeline.segment.segment`
runs it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PipelineSpec:
    """Everything the pipeline needs from a model manifest (see medseg.models.manifest)."""

    spacing_zyx: tuple[float, float, float]
    window_hu: tuple[float, float]
    roi_size: tuple[int, int, int]
    labels: tuple[int, ...] = (1,)
    overlap: float = 0.25
    sw_batch_size: int = 2
    blend_mode: str = "gaussian"
    #: re-predict candidate lesions on the 8 axis flips of their window (medseg.core.pipeline.flip_check)
    flip_check: bool = False
    #: the check's window budget, as a multiple of the first pass's windows (medseg.core.pipeline.flip_check);
    #: None: unbounded
    flip_check_budget: float | None = None
    min_lesion_ml: float = 0.05
    #: a component is kept only if the model is at least this sure of one of its voxels
    min_peak_probability: float = 0.0
    #: a binary model's voxel is foreground above this probability (0.5: the argmax). Lower, with
    #: ``min_peak_probability`` >= 0.5, it is hysteresis: components grown down to it around sure cores
    voxel_threshold: float = 0.5
    crop_body: bool = True
    #: nothing outside the patient is called: foreground only inside the body mask (the largest
    #: connected component above ``body_threshold_hu``, holes filled slice by slice), on the model grid
    body_mask: bool = False
    body_threshold_hu: float = -500.0
    crop_margin_mm: float = 10.0
