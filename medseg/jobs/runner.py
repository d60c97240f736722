"""The runner: ``segment_study`` turns an input study into output files + result.json.

``medseg segment`` and the worker (:mod:`medseg.jobs.worker`) call the same function. It is
the only place that combines I/O, model loading and the pure pipeline.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from medseg import __version__
from medseg.config import Settings
from medseg.core.exceptions import MedsegError, SegWriteError, StorageError
from medseg.core.features import study_features
from medseg.core.io import LoadedStudy, load_study, write_nifti
from medseg.core.schemas import (
    InputInfo,
    LesionOut,
    ModelRef,
    Replaces,
    SegmentationResult,
    SegmentOut,
    SegOut,
    TaskOut,
)
from medseg.core.seg import write_seg

if TYPE_CHECKING:  # torch and MONAI load after the study is read: a bad input is refused without them
    from medseg.core.pipeline.segment import SegmentationOutput
    from medseg.models.store import LoadedModel

log = logging.getLogger(__name__)

Progress = Callable[[str], None]


@dataclass
class RunOutcome:
    output: SegmentationOutput
    device: str
    degraded_reason: str | None


def segment_with_fallback(
    run: Callable[[str, bool], SegmentationOutput], *, device: str, amp: bool,
    move_to_cpu: Callable[[], None] = lambda: None,
) -> RunOutcome:
    """``run(device, amp)`` once; a CUDA out-of-memory error retries on the CPU and says so."""
    import torch

    try:
        return RunOutcome(run(device, amp), device, None)
    except torch.cuda.OutOfMemoryError:
        log.warning("CUDA out of memory on %s; retrying on CPU (degraded)", device)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        move_to_cpu()
        return RunOutcome(run("cpu", False), "cpu", f"CUDA out of memory on {device}; ran on CPU")


def intra_op_threads(settings: Settings) -> int:
    """torch's intra-op threads: ``cpu_threads`` if set, else the cores this process may use divided
    among the ``[service] workers`` that may run inference at once (torch's default, every core for
    each of them, oversubscribes: one forward pass took 0.65-0.95 s instead of 0.09 s on a busy
    2-core host). The setting is process-wide, so every worker thread shares the same share."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return settings.cpu_threads or max(1, cores // settings.service.workers)


def segment_study(
    input_path: Path,
    out_dir: Path,
    settings: Settings,
    *,
    model: str | None = None,
    device: str | None = None,
    nifti: bool = False,
    progress: Progress | None = None,
    loaded: LoadedModel | None = None,
    series_uid: str | None = None,
    replaces: tuple[str, int] | None = None,
) -> SegmentationResult:
    """Segment one study. ``loaded``: a model already in memory (the worker keeps one);
    ``series_uid``: segment that series instead of the automatic choice; ``replaces``: the (SEG
    series UID, revision) this result supersedes (the SEG and result.json name it).

    The study is read and checked before torch and MONAI are imported (about 4 s on a 2-core host):
    `medseg segment` refuses a bad input at once."""
    report = progress or (lambda stage: None)
    started = time.perf_counter()
    timings: dict[str, float] = {}

    report("reading study")
    t = time.perf_counter()
    rules = settings.selection.model_copy(update={"series_uid": series_uid}) if series_uid else settings.selection
    study = load_study(Path(input_path), rules, settings.geometry)
    timings["load"] = time.perf_counter() - t

    report("loading model")
    t = time.perf_counter()
    import torch

    from medseg.models.store import load_model, resolve_device

    torch.set_num_threads(intra_op_threads(settings))
    if loaded is None:
        loaded = load_model(settings.model_dir(model), device=resolve_device(device or settings.device))
    resolved = loaded.device
    timings["model_load"] = time.perf_counter() - t

    outcome = segment_with_fallback(
        lambda on, amp: loaded.segment(study.volume, device=on, amp=amp, progress=report),
        device=resolved, amp=settings.amp, move_to_cpu=lambda: loaded.to("cpu"),
    )
    timings.update({k.removesuffix("_s"): v for k, v in outcome.output.timings.items()})

    report("writing results")
    t = time.perf_counter()
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        outputs, seg_out = _write_outputs(study, outcome.output, loaded, out_dir, nifti, replaces)
        timings["write"] = time.perf_counter() - t
        timings["total"] = time.perf_counter() - started
        result = _result(study, outcome, loaded, outputs, seg_out, timings)
        (out_dir / "result.json").write_text(result.model_dump_json(indent=2) + "\n")
    except OSError as exc:
        raise StorageError(f"results cannot be written under {out_dir.parent} ({exc.strerror or type(exc).__name__})") from None
    return result


def _write_outputs(study: LoadedStudy, output: SegmentationOutput, loaded: LoadedModel, out_dir: Path, nifti: bool,
                   replaces: tuple[str, int] | None = None):
    outputs: dict[str, str] = {}
    seg_out = None
    manifest = loaded.manifest
    if study.kind == "dicom":
        try:
            info = write_seg(
                out_dir / "seg.dcm", output.mask.array, study.volume.source, manifest.labels,
                model_name=manifest.name, model_version=manifest.version, task=manifest.task.title,
                finding=manifest.task.finding, replaces=replaces,
            )
        except (MedsegError, OSError):
            raise
        except Exception as exc:  # noqa: BLE001 - the mask exists; what fails is the series' headers
            raise SegWriteError(f"no DICOM SEG can be written from this series' headers ({type(exc).__name__}); "
                                "the segmentation itself succeeded") from None
        outputs["seg"] = "seg.dcm"
        seg_out = SegOut(sop_instance_uid=info.sop_instance_uid, series_instance_uid=info.series_instance_uid,
                         frames=info.frames,
                         replaces=Replaces(seg_series_uid=replaces[0], revision=replaces[1]) if replaces else None)
    if nifti or study.kind == "nifti":
        write_nifti(output.mask, out_dir / "mask.nii.gz", dtype=np.uint8)
        outputs["nifti"] = "mask.nii.gz"
    outputs["result"] = "result.json"
    return outputs, seg_out


def _result(study, outcome: RunOutcome, loaded: LoadedModel, outputs, seg_out, timings) -> SegmentationResult:
    volume = study.volume
    first = volume.source[0] if volume.source else None
    names = {label.value: label.name for label in loaded.manifest.labels}
    lesions = [
        LesionOut(label=l.label, label_name=names[l.label], volume_ml=l.volume_ml, centroid_lps_mm=l.centroid_lps_mm,
                  extent_mm=l.extent_mm, mean_probability=l.mean_probability, mean_entropy=l.mean_entropy)
        for l in outcome.output.lesions
    ]
    return SegmentationResult(
        medseg_version=__version__,
        created_utc=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        input=InputInfo(
            kind=study.kind,
            study_instance_uid=str(first.StudyInstanceUID) if first is not None else None,
            series_instance_uid=str(first.SeriesInstanceUID) if first is not None else None,
            shape_krc=volume.shape,
            spacing_krc_mm=tuple(round(s, 4) for s in volume.spacing),
            transfer_syntaxes=study.transfer_syntaxes,
            series=[d.as_dict() for d in study.decisions],
            scan=study.scan_summary,
        ),
        model=ModelRef(name=loaded.manifest.name, version=loaded.manifest.version, sha256=loaded.manifest.weights.sha256,
                       manifest_sha256=loaded.manifest.manifest_sha256()),
        device=outcome.device,
        degraded=outcome.degraded_reason is not None,
        degraded_reason=outcome.degraded_reason,
        task=TaskOut(title=loaded.manifest.task.title, finding=loaded.manifest.task.finding),
        segments=[SegmentOut(label=label.value, name=label.name,
                             code=(label.type.scheme, label.type.value, label.type.meaning),
                             volume_ml=round(sum(x.volume_ml for x in lesions if x.label == label.value), 3),
                             components=sum(x.label == label.value for x in lesions))
                  for label in loaded.manifest.labels],
        lesion_count=len(lesions),
        lesions=lesions,
        total_volume_ml=round(sum(l.volume_ml for l in lesions), 3),
        outputs=outputs,
        seg=seg_out,
        timings_s={k: round(v, 3) for k, v in timings.items()},
        features=study_features(volume, lesions),
    )
