"""Dataset exports as a kind of job for the executor."""

from django.conf import settings

from config.celery import Queue
from ranking.exports.models import DatasetExport
from ranking.exports.services import dataset_export_execute, dataset_export_retried
from sampler.jobs.kinds import JobKind, job_kind_register

EXPORT = job_kind_register(
    JobKind(
        "export",
        DatasetExport,
        dataset_export_execute,
        queue=Queue.DEFAULT.value,
        time_limit=settings.EXPORT_TIME_LIMIT,
        on_retry=dataset_export_retried,
    )
)
