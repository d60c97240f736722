"""The in-process worker: claims queued jobs, runs the segmentation core, hands the SEG to delivery.

It reaches the queue only through :class:`medseg.jobs.store.JobStore` (``claim_next``,
``finish``, ``fail``), so a distributed task engine can replace this loop without
touching the node or the API. Models stay loaded between jobs (one per model ref).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from audit.recorder import Recorder
from medseg.config import Settings
from medseg.core.exceptions import HostBusyError, JobTakenOverError, MedsegError, ModelError, StorageError
from medseg.jobs.orm import Job
from medseg.jobs.store import JobStore
from medseg.models.registry import Registry, split_ref
from medseg.models.shadow import ShadowStore

if TYPE_CHECKING:  # torch and MONAI load with the first model (a process of the api role never loads them)
    from medseg.models.store import LoadedModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerHooks:
    """Where a finished job's results go next (bound by the service)."""

    #: calling AE title -> destination names of its SEG
    route: Callable[[str], list[str]]
    #: a SEG is ready: wake the delivery loop
    delivered: Callable[[], None]
    #: (job id, name/version, label-free features) after each segmentation: drift monitoring
    observe: Callable[[int, str, dict], None]


class Worker:
    """Model versions come from ``registry`` (the fallback chain per study, the shadow candidate);
    shadow results go to ``shadow_store``."""

    def __init__(self, jobs: JobStore, settings: Settings, record: Recorder, metrics, registry: Registry,
                 shadow_store: ShadowStore, hooks: WorkerHooks) -> None:
        self.jobs, self.settings, self.record, self.metrics = jobs, settings, record, metrics
        self.registry, self.shadow_store, self.hooks = registry, shadow_store, hooks
        self.spool_root, self.results_root = settings.service.spool_dir, settings.service.results_dir
        self._models: dict[str, LoadedModel] = {}
        self._models_lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._backoff_s = 0.0  # after a job had to go back to the queue (see _give_back)
        self._preload_failed: set[str] = set()  # active versions that would not load ahead of their jobs

    def model(self, ref: str) -> LoadedModel:
        with self._models_lock:
            if ref not in self._models:
                from medseg.models.store import load_model, resolve_device

                loaded = load_model(self.settings.model_dir(ref), device=resolve_device(self.settings.device))
                self._models[ref] = loaded
                m = loaded.manifest
                self.record("model.loaded", actor="system", model=ref, sha256=m.weights.sha256,
                            manifest_sha256=m.manifest_sha256(), device=loaded.device)
            return self._models[ref]

    def _forget(self, ref: str) -> None:
        with self._models_lock:
            self._models.pop(ref, None)

    def preload_active(self) -> None:
        """Idle: load the registry's active version if it is not loaded yet (a promotion, rollback or
        fallback made it active, perhaps from another process), so readiness stays green between
        studies. A version that fails to load is tried once per activation; its jobs fall back."""
        ref = self.registry.active_ref(self.settings.default_model)
        if self.has_model(ref) or ref in self._preload_failed:
            return
        try:
            self.model(ref)
        except Exception as exc:  # noqa: BLE001 - the jobs of a version that will not load fall back per study
            self._preload_failed.add(ref)
            log.warning("active model %s could not be loaded ahead of its jobs (%s)", ref, type(exc).__name__)

    def has_model(self, ref: str) -> bool:
        with self._models_lock:
            return ref in self._models

    def start(self) -> None:
        for i in range(self.settings.service.workers):
            thread = threading.Thread(target=self._run, name=f"medseg-worker-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    @property
    def started(self) -> bool:
        return bool(self._threads)

    def alive(self) -> bool:
        """Every worker thread runs (readiness)."""
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                job = self.jobs.claim_next()
            except Exception:  # noqa: BLE001 - database hiccup: retry after the poll interval
                log.exception("claiming a job failed")
                job = None
            if job is None:
                self.preload_active()
                self._stop.wait(self.settings.service.poll_interval_s)
                continue
            try:
                self.run_job(job)
                self._backoff_s = 0.0
            except Exception as exc:  # noqa: BLE001 - the worker thread must outlive any one job
                self._give_back(job, exc)
            except BaseException as exc:  # SystemExit from a library: the thread ends; its job is not lost
                log.critical("worker thread ends (%s); job %s back to the queue", type(exc).__name__, job.id)
                self.jobs.requeue(job.id, reason=f"the worker thread ended ({type(exc).__name__})")
                raise

    def execute(self, job_id: int, series_uid: str, redelivered: bool = False) -> None:
        """One job the broker delivered (``medseg serve --role worker``, medseg.jobs.broker): claim
        it (taking it over from a dead worker if the broker ``redelivered`` it), run it. Returns
        when the job has ended or gone back to the queue, so the broker acknowledges the message
        only then; a job that is not there to claim is done with at once."""
        job = self.jobs.claim(job_id, series_uid, take_over=redelivered)
        if job is None:
            return
        try:
            self.run_job(job)
        except JobTakenOverError:
            log.warning("job %s was taken over by another worker meanwhile; this result is discarded", job_id)
        except Exception as exc:  # noqa: BLE001 - the worker process must outlive any one job
            self._give_back(job, exc)

    def _give_back(self, job: Job, exc: Exception) -> None:
        """An error outside study and model (a full disk, an audit write that fails, the database
        gone): the job is not lost and the thread does not die. The job goes back to the queue —
        retried with exponential backoff until that works — and the worker waits before it claims
        again, so a full disk does not spin."""
        log.error("job %s: %s outside the study and the model; back to the queue", job.id, type(exc).__name__)
        why = exc.message if isinstance(exc, HostBusyError) else f"{type(exc).__name__} outside the study and the model"
        self.metrics.job_finished("requeued", None)
        delay = self.settings.service.poll_interval_s
        while not self._stop.is_set():
            try:
                self.jobs.requeue(job.id, reason=why)
                break
            except Exception:  # noqa: BLE001 - still failing (e.g. the disk is still full): wait, retry
                self._stop.wait(delay)
                delay = min(delay * 2, 60.0)
        self._backoff_s = min(max(self._backoff_s * 2, self.settings.service.poll_interval_s), 60.0)
        self._stop.wait(self._backoff_s)

    def run_job(self, job: Job) -> None:
        """Segment with the job's model version; if that version fails on this study (load, checksum,
        exception, non-finite or out-of-contract output, time budget) the previous good versions are
        tried in turn (safety rule 4). Input problems fail the job: another model would not help."""
        from medseg.jobs.runner import segment_study  # torch/MONAI: imported when the first job runs

        started = time.perf_counter()
        service = self.settings.service
        out_dir = self.results_root / str(job.id)
        name, first = split_ref(job.model)
        candidate = self.registry.shadow(name)
        old = self.jobs.replaced_by(job) if job.revision > 1 else None
        replaces = (old.seg_series_uid, old.revision) if old is not None else None
        failures: list[dict] = []
        result = None
        for version in self.registry.fallback_chain(name, first):
            ref = f"{name}/{version}"
            try:
                loaded = self.model(ref)
                with loaded.time_budget(service.model_time_budget_s, service.busy_host_factor):
                    result = segment_study(self.spool_root / job.study_uid / job.series_uid, out_dir, self.settings,
                                           loaded=loaded, series_uid=job.series_uid, nifti=candidate is not None,
                                           replaces=replaces)
                break
            except (StorageError, HostBusyError):
                raise  # not this version's fault, nor the study's: the job goes back to the queue (_run)
            except MedsegError as exc:
                if not isinstance(exc, ModelError):
                    self._failed(job, exc.code, exc.message)
                    return
                failures.append({"version": version, "code": exc.code, "reason": exc.message})
            except Exception as exc:  # noqa: BLE001 - a version that crashes has failed on this study
                log.error("job %s: model %s failed: %s", job.id, ref, type(exc).__name__)
                failures.append({"version": version, "code": "model.exception",
                                 "reason": f"{type(exc).__name__} during segmentation"})
            self._forget(ref)
            self.record("model.failed", outcome="failure", actor="system", job_id=job.id, study_uid=job.study_uid,
                        model=ref, code=failures[-1]["code"], reason=failures[-1]["reason"])
        if result is None and all(f["code"] == "model.time_budget" for f in failures) \
                and job.attempts < service.budget_attempts:
            # every version overran: no fallback could help now; a slow moment must not fail the study
            self.jobs.requeue(job.id, reason=f"every model version overran the time budget; attempt {job.attempts} "
                                             f"of {service.budget_attempts}, retried")
            self._stop.wait(min(60.0, service.poll_interval_s * 2 ** job.attempts))  # let the moment pass
            return
        if result is None:
            tried = "; ".join(f"{f['version']}: {f['reason']}" for f in failures)
            self._failed(job, "model.no_good_version", f"no model version could segment this study ({tried})")
            return
        elapsed = time.perf_counter() - started
        self.metrics.job_finished("segmented", elapsed)
        used = f"{name}/{result.model.version}"
        summary = {"device": result.device, "degraded": result.degraded, "degraded_reason": result.degraded_reason,
                   "lesion_count": result.lesion_count, "total_volume_ml": result.total_volume_ml,
                   "model_used": used, "model_sha256": result.model.sha256, "fallback": bool(failures),
                   "fallback_reasons": failures, "timings_s": result.timings_s,
                   "replaces": {"job_id": old.id, "seg_series_uid": old.seg_series_uid,
                                "revision": old.revision} if old is not None else None}
        if failures:
            ids = dict(actor="system", job_id=job.id, study_uid=job.study_uid, series_uid=job.series_uid)
            self.record("model.fallback_used", model=used, failed=failures, **ids)
            self.record("alert.model_fallback", outcome="failure", model=used, failed=failures, **ids)
            self.metrics.fallbacks.inc()
        self.jobs.finish(job.id, seg_path=str(out_dir / "seg.dcm"), seg_series_uid=result.seg.series_instance_uid,
                         seg_sop_uid=result.seg.sop_instance_uid, result=summary,
                         destinations=self.hooks.route(job.calling_ae), duration_s=round(elapsed, 3),
                         model_sha256=result.model.sha256, model_used=used,
                         manifest_sha256=result.model.manifest_sha256)
        self.hooks.delivered()
        self.hooks.observe(job.id, used, result.features)
        if candidate and f"{name}/{candidate}" != used:
            self._shadow(job, f"{name}/{candidate}", used, result, out_dir)

    def _shadow(self, job: Job, ref: str, active: str, active_result, out_dir: Path) -> None:
        """Run the shadow candidate on the same series; store and compare, never send."""
        from medseg.core.io.nifti import read_nifti
        from medseg.core.scoring import dice
        from medseg.jobs.runner import segment_study
        from medseg.models.orm import ShadowResult

        row = ShadowResult(job_id=job.id, study_uid=job.study_uid, candidate=ref, active=active,
                           lesions_active=active_result.lesion_count, volume_active_ml=active_result.total_volume_ml,
                           seconds_active=active_result.timings_s.get("total", 0.0))
        shadow_dir = out_dir / f"shadow-{ref.split('/')[-1]}"
        try:
            loaded = self.model(ref)
            with loaded.time_budget(self.settings.service.model_time_budget_s):
                result = segment_study(self.spool_root / job.study_uid / job.series_uid, shadow_dir, self.settings,
                                       loaded=loaded, series_uid=job.series_uid, nifti=True)
            row.dice = dice(read_nifti(shadow_dir / "mask.nii.gz").array, read_nifti(out_dir / "mask.nii.gz").array)
            row.lesions_candidate, row.volume_candidate_ml = result.lesion_count, result.total_volume_ml
            row.seconds_candidate = result.timings_s.get("total", 0.0)
        except Exception as exc:  # noqa: BLE001 - a failing candidate is evidence, not an outage
            row.error = getattr(exc, "message", type(exc).__name__)
        self.shadow_store.add(row)

    def _failed(self, job: Job, code: str, message: str) -> None:
        self.jobs.fail(job.id, code, message)  # records job.failed and the alert with the state change
        self.metrics.job_finished("failed", None)
