"""The distributed queue for scale-out: Celery over RabbitMQ delivers job ids to worker processes.

**Why Celery and RabbitMQ.** Both are what hospital IT already runs (RabbitMQ is on these hosts at
127.0.0.1:5672), Celery's ``acks_late`` gives exactly the at-least-once hand-off a clinical queue
needs, and a worker is a plain ``medseg serve --role worker`` process on any host. Dramatiq or RQ
would do the same with fewer users; a home-made queue over the database would not survive a
worker killed mid-job without leases and timeouts of its own.

**The job table stays the source of truth**; the broker only delivers work:

* the message is the job id and its series UID, nothing else (no pixel data, no state); the UID
  makes a message left in the broker from another database (one restored, or reset) harmless:
  it matches no job there and is dropped;
* the node (or any process that queues jobs) runs the :class:`Dispatcher`: every queued job is
  published once per attempt, after its state is committed. A process that dies between commit
  and publish loses nothing: the next dispatcher to start publishes every queued job again, and
  duplicates are harmless (below);
* a worker **claims** the job in the database before it runs it (``JobStore.claim``, one
  conditional UPDATE): a second message for a job that is running or done is acknowledged and
  dropped, so a study is segmented once per attempt and gets one SEG;
* **late acknowledgement, prefetch 1**: a message is acknowledged when its job has ended, and a
  worker holds one message at a time. A worker killed mid-job (``kill -9``, a host gone) never
  acknowledged it, so RabbitMQ redelivers it to another worker, flagged ``redelivered``: that
  worker takes the running job over (``job.started`` with ``taken_over_from``). If the first
  worker was only cut off and comes back, its result is refused (``JobTakenOverError``,
  ``JobStore.finish``): the taking-over worker's SEG is the one sent;
* **the acknowledgement timeout** (RabbitMQ's ``consumer_timeout``, 30 min by default) must be
  longer than the slowest job, or RabbitMQ closes the channel of a worker still working and hands
  the job to another: ``[service] broker_ack_timeout_s`` states what the broker is set to, and the
  settings refuse a model time budget whose retries could outlast it.

How pixel data reaches a worker: the node's spool and the results folder live on **shared
storage** (``[service] data_dir`` on an NFS or SMB share, mounted at the same path on every host),
as mercure and Kaapana share theirs; the database holds paths inside it. See the README's
"Scaling out".
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable

from medseg.core.loops import Ticker
from medseg.jobs.store import JobStore, worker_id

if TYPE_CHECKING:
    from celery import Celery

    from medseg.config import Settings

log = logging.getLogger(__name__)

TASK = "medseg.run_job"
QUEUE = "medseg-jobs"


def celery_app(settings: Settings) -> Celery:
    """The Celery application every role builds the same way (publishing and consuming)."""
    from celery import Celery

    app = Celery("medseg", broker=settings.service.broker_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,  # acknowledged when the job has ended, not when it starts
        task_reject_on_worker_lost=True,  # a worker process that dies: the message goes back
        worker_prefetch_multiplier=1,  # one message held per worker process at a time
        task_ignore_result=True,  # the job table holds every result
        task_default_queue=QUEUE,
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,  # medseg's own log configuration stays (medseg.app.logs)
        worker_redirect_stdouts=False,
        worker_cancel_long_running_tasks_on_connection_loss=True,
    )
    return app


class Dispatcher(Ticker):
    """Publishes each queued job once per attempt (see the module docstring)."""

    thread_name, interval_s = "medseg-dispatch", 0.5

    def __init__(self, jobs: JobStore, app: Celery) -> None:
        super().__init__()
        self.jobs, self.app = jobs, app
        self._published: set[tuple[int, int]] = set()

    def tick(self) -> int:
        queued = self.jobs.queued_attempts()
        # remember only what is still queued: the set stays as small as the queue
        self._published &= {(job_id, attempts) for job_id, attempts, _ in queued}
        sent = 0
        for job_id, attempts, series_uid in queued:
            if (job_id, attempts) in self._published:
                continue
            self.app.send_task(TASK, args=[job_id, series_uid], queue=QUEUE)
            self._published.add((job_id, attempts))
            sent += 1
        return sent


def run_worker(settings: Settings, execute: Callable[[int, str, bool], None]) -> None:
    """Consume jobs until stopped (SIGTERM or Ctrl-C: the job in hand is finished first): one job
    at a time per process (Celery's solo pool: the models stay loaded in this process); run more
    processes for more (one per GPU, or N per CPU host). ``execute(job_id, series_uid, redelivered)``
    claims and runs one job (:meth:`medseg.jobs.worker.Worker.execute`)."""
    app = celery_app(settings)

    @app.task(name=TASK, bind=True)
    def run_job(task, job_id: int, series_uid: str) -> None:
        execute(int(job_id), str(series_uid), bool((task.request.delivery_info or {}).get("redelivered")))

    app.worker_main(["worker", "--pool=solo", "--concurrency=1", "--without-gossip", "--without-mingle",
                     "--loglevel=WARNING", "-Q", QUEUE, "-n", f"medseg-{worker_id()}"])
