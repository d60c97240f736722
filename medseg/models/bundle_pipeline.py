"""A MONAI bundle's own inference, run in memory: the bundle's ``preprocessing``, ``inferer`` and
``postprocessing`` exactly as its ``inference.json`` (or ``.yaml``) declares them, less loading
and saving — what MONAI Deploy's ``MonaiBundleInferenceOperator`` does.

* The configs are read with ``monai.bundle.ConfigParser`` (references such as
  ``@displayable_configs#sw_batch_size`` resolve as MONAI resolves them). ``LoadImage(d)`` and
  ``SaveImage(d)`` are removed from the configs before anything is instantiated.
* The study goes in as MONAI's NIfTI reader would give it: the array in NIfTI voxel order
  (``volume.array.transpose(2, 1, 0)``), the RAS affine, ``original_channel_dim`` "no channel",
  float32. The bundle's ``Orientationd``, ``Spacingd``, intensity transforms and crops then act as
  in ``python -m monai.bundle run``; its ``Invertd`` brings the prediction back onto the input grid,
  which is turned back into the Volume's (k, r, c) order: the mask lies on the exact source grid.
* The service's safety steps stay: the weights' checksum (``medseg.models.store``), and output
  that is not finite is refused (``model.nonfinite_output``) before post-processing.
* No AMP: CPU inference in float32, as ``monai.bundle run`` with ``evaluator#amp`` false.

Segments are measured per connected component of each label (volume, centroid, extent, mean
probability of the winning class), without the manifest's lesion filters: the bundle's own
post-processing is the whole post-processing.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from medseg.core.exceptions import ModelOutputError
from medseg.core.pipeline.segment import SegmentationOutput, measure_components
from medseg.core.volume import Volume, affine_to_nifti

CONFIG_NAMES = ("inference.json", "inference.yaml", "inference.yml")
#: transforms that read or write files: the service does its own I/O
IO_TRANSFORMS = ("LoadImage", "LoadImaged", "SaveImage", "SaveImaged")


@contextlib.contextmanager
def quiet_monai():
    """MONAI's deprecation notices about a bundle's arguments are for the bundle's authors, not for
    the people running the service: they are not printed (a real error still raises)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"monai\.")
        yield


def find_config(configs: Path) -> Path | None:
    return next((configs / n for n in CONFIG_NAMES if (configs / n).is_file()), None)


def _is_io(item) -> bool:
    return isinstance(item, dict) and str(item.get("_target_", "")).split(".")[-1] in IO_TRANSFORMS


def without_io(config: dict) -> dict:
    """``preprocessing`` / ``postprocessing`` with the loading and saving transforms taken out."""
    for key in ("preprocessing", "postprocessing"):
        compose = config.get(key)
        if isinstance(compose, dict) and isinstance(compose.get("transforms"), list):
            compose["transforms"] = [t for t in compose["transforms"] if not _is_io(t)]
    return config


#: (network class, argument) -> why leaving it out changes nothing: arguments MONAI has removed
#: that had no effect on the network's layers or weights. A bundle written for an older MONAI
#: still builds the same network; anything not listed here that the installed MONAI rejects
#: refuses the import (``bundle.network``).
RETIRED_ARGS = {
    ("SwinUNETR", "img_size"): "removed in MONAI 1.5 (Project-MONAI/MONAI#8430); since 1.3 it only checked the "
                               "input size, which forward() checks now",
}


def retired_args(network_def: dict) -> tuple[str, ...]:
    """The ``network_def#<arg>`` ids of :data:`RETIRED_ARGS` this config sets and the installed
    network class no longer accepts."""
    import inspect

    from monai.networks import nets

    target = str(network_def.get("_target_", "")).split(".")[-1]
    cls = getattr(nets, target, None)
    if cls is None:
        return ()
    accepted = inspect.signature(cls.__init__).parameters
    return tuple(f"network_def#{arg}" for (name, arg) in RETIRED_ARGS
                 if name == target and arg in network_def and arg not in accepted)


def apply_changes(config: dict, overrides: dict | None = None, dropped: tuple[str, ...] = ()) -> dict:
    """The config with the version's ``bundle_dropped_args`` removed and ``bundle_overrides`` set
    (an id ``a#b#0`` addresses nested keys and list items, as in MONAI)."""
    for cid in dropped:
        *parents, last = cid.split("#")
        _node(config, parents).pop(last, None)
    for cid, value in (overrides or {}).items():
        *parents, last = cid.split("#")
        node = _node(config, parents, create=True)
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return config


def _node(config, parts, create=False):
    for part in parts:
        if isinstance(config, list):
            config = config[int(part)]
        else:
            if create and part not in config:
                config[part] = {}
            config = config[part]
    return config


def parser_for(configs: Path, bundle_root: Path, overrides: dict | None = None, dropped: tuple[str, ...] = ()):
    """A ConfigParser over the bundle's inference config and metadata, I/O transforms removed,
    the version's overrides and dropped arguments applied."""
    from monai.bundle import ConfigParser

    with quiet_monai():
        parser = ConfigParser()
        parser.read_config(str(find_config(configs)))
        if (configs / "metadata.json").is_file():
            parser.read_meta(str(configs / "metadata.json"))
    parser.config = apply_changes(without_io(parser.config), overrides, dropped)
    parser["bundle_root"] = str(bundle_root)
    return parser


def build_bundle_network(configs: Path, overrides: dict | None = None, dropped: tuple[str, ...] = ()) -> torch.nn.Module:
    """The network the bundle declares (``network_def``), built by MONAI."""
    with quiet_monai():
        return parser_for(configs, configs.parent, overrides, dropped).get_parsed_content("network_def")


class BundlePipeline:
    """Built once per loaded model version; ``segment(volume)`` per study."""

    def __init__(self, configs: Path, label_values: tuple[int, ...], overrides: dict | None = None,
                 dropped: tuple[str, ...] = ()) -> None:
        parser = parser_for(configs, configs.parent, overrides, dropped)
        self.image_key = str(parser.get("image_key", "image"))
        with quiet_monai():
            self.preprocessing = parser.get_parsed_content("preprocessing")
            self.inferer = parser.get_parsed_content("inferer")
            self.postprocessing = parser.get_parsed_content("postprocessing")
        self.label_values = label_values

    def segment(self, volume: Volume, predictor: Callable[[torch.Tensor], torch.Tensor], *, device: str = "cpu",
                progress: Callable[[str], None] | None = None) -> SegmentationOutput:
        """``predictor``: the network (on ``device``), or the loaded model version wrapping it."""
        with quiet_monai():
            return self._segment(volume, predictor, device, progress or (lambda stage: None))

    def _segment(self, volume: Volume, predictor, device: str, report: Callable[[str], None]) -> SegmentationOutput:
        from monai.data import MetaTensor, decollate_batch, list_data_collate
        from monai.transforms import AsDiscreted, Compose

        timings: dict[str, float] = {}
        t = time.perf_counter()
        report("preprocess")
        data = self.preprocessing({self.image_key: _as_loaded(volume, MetaTensor)})
        batch = list_data_collate([data])
        timings["preprocess_s"] = time.perf_counter() - t

        t = time.perf_counter()
        report("inference")
        with torch.no_grad():
            pred = self.inferer(batch[self.image_key].to(device), predictor)
        if not torch.isfinite(pred).all():
            raise ModelOutputError("the model returned NaN or infinite values", code="model.nonfinite_output")
        batch["pred"] = pred.cpu() if hasattr(pred, "cpu") else pred
        timings["inference_s"] = time.perf_counter() - t

        t = time.perf_counter()
        report("postprocess")
        item = decollate_batch(batch)[0]
        del batch, data, pred  # only the decollated item from here on: each copy is a CT-sized tensor
        steps = list(self.postprocessing.transforms) if isinstance(self.postprocessing, Compose) else [
            self.postprocessing]
        split = next((i for i, s in enumerate(steps) if isinstance(s, AsDiscreted)), len(steps))
        _keep_only_the_trace(item, self.image_key, steps, MetaTensor)
        for step in steps[:split]:
            item = step(item)
        scores = torch.as_tensor(item["pred"]).detach().float()
        if scores.shape[0] > 1 and scores.shape[0] != len(self.label_values) + 1:
            raise ModelOutputError(f"the network gives {scores.shape[0]} channels, metadata.json names "
                                   f"{len(self.label_values)} label(s) and the background", code="model.output_shape")
        rest = steps[split:]
        best = None
        if len(rest) == 1 and _is_plain_argmax(rest[0]):
            out, best = argmax_and_max(scores)  # = AsDiscreted(argmax=True) (tests/test_bundle.py)
        else:
            for step in rest:
                item = step(item)
            out = torch.as_tensor(item["pred"]).detach()
            out = argmax_and_max(out)[0] if out.shape[0] > 1 else out[0]
        del item
        labels = np.ascontiguousarray(out.numpy().astype(np.uint8, copy=False).transpose(2, 1, 0))
        if labels.shape != volume.shape:
            raise ModelOutputError(f"the bundle's post-processing gave shape {labels.shape}, the study is "
                                   f"{volume.shape} (no Invertd back onto the input grid?)",
                                   code="model.output_shape")
        # the winning class's probability where the bundle discretizes after inverting onto the input
        # grid (spleen, BTCV, DiNTS); 1.0 (not known) where it discretizes first (wholeBody)
        confidence = best.numpy().transpose(2, 1, 0) if best is not None and scores.shape[0] > 1 else \
            np.broadcast_to(np.float32(1.0), labels.shape)
        segments = measure_components(labels, confidence, volume.affine, self.label_values)
        timings["postprocess_s"] = time.perf_counter() - t
        return SegmentationOutput(volume.with_array(labels), segments, timings)


def _keep_only_the_trace(item: dict, key: str, steps: list, meta_tensor) -> None:
    """Post-processing reads the input image only through ``Invertd``, and ``Invertd`` reads only
    its meta data and applied operations: where no step names the image key otherwise, its pixels
    (a resampled copy of the study) are released before ``Invertd`` resamples back onto the CT grid,
    the study's memory peak."""
    from monai.transforms import Invertd

    if any(key in tuple(getattr(s, "keys", ())) for s in steps if not isinstance(s, Invertd)):
        return
    image = item.get(key)
    if isinstance(image, meta_tensor):
        item[key] = meta_tensor(torch.empty(0), meta=image.meta, applied_operations=image.applied_operations)


def _is_plain_argmax(step) -> bool:
    """``AsDiscreted(keys="pred", argmax=True)`` and nothing else (no one-hot, threshold or rounding)."""
    from monai.transforms import AsDiscreted

    if not isinstance(step, AsDiscreted) or tuple(step.keys) != ("pred",):
        return False
    return (tuple(step.argmax) == (True,) and list(step.to_onehot) == [None] and list(step.threshold) == [None]
            and tuple(step.rounding) == (None,) and step.converter.kwargs.get("dim", 0) == 0)


def argmax_and_max(scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``scores.argmax(0)`` as uint8 (ties to the first channel, as torch's argmax) and
    ``scores.max(0)``, in one running pass over the channels: torch's CPU argmax across the first
    axis of a (C, X, Y, Z) volume is one strided pass per voxel (6 s on 512 x 512 x 134), and a
    channel-last copy would double the largest array of the study."""
    data = scores.as_tensor() if hasattr(scores, "as_tensor") else scores
    if data.shape[0] > 256:
        raise ModelOutputError(f"the network gives {data.shape[0]} channels; a SEG holds at most 255 labels",
                               code="model.output_shape")
    best = data[0].clone()
    labels = torch.zeros(best.shape, dtype=torch.uint8)
    for c in range(1, data.shape[0]):
        labels.masked_fill_(data[c] > best, c)
        torch.maximum(best, data[c], out=best)
    return labels, best


def _as_loaded(volume: Volume, meta_tensor):
    """The study as ``LoadImaged`` (NibabelReader) gives a NIfTI of it: voxel order, RAS affine, float32."""
    # a view where the study is float32 already (as a DICOM series is): no second copy of the CT
    data = np.asarray(volume.array, dtype=np.float32).transpose(2, 1, 0)
    affine = torch.as_tensor(affine_to_nifti(volume.affine), dtype=torch.float64)
    meta = {"affine": affine, "original_affine": affine.clone(), "spatial_shape": np.array(data.shape),
            "space": "RAS", "original_channel_dim": float("nan"), "filename_or_obj": "study"}
    return meta_tensor(torch.from_numpy(data), meta=meta)
