"""One lifecycle for every kind of background work (the run executor).

A job is a database row (generation job, training run, comparison, export, red-team run...)
whose model inherits :class:`sampler.jobs.models.Job`. The row is the source of truth:
``queued -> running (started_at, heartbeat) -> succeeded | failed | cancelled``. Each kind of
job is a small plug-in (:class:`sampler.jobs.kinds.JobKind`) registered by the feature that owns
the table; the executor in :mod:`sampler.jobs.services` publishes, claims, heartbeats, cancels,
retries, re-publishes lost messages and re-queues jobs whose worker died, for every kind alike.
"""
