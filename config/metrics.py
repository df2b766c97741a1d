"""Prometheus metrics at ``/metrics``: django-prometheus (requests, database) plus Tandem's own
numbers, read from the database and the broker on every scrape by one custom collector.

The application's numbers come through the selector functions below (one place to point at
other tables); the collector only turns them into metric families. Every number is global
(the database's, the broker's), so any web process answers for the whole deployment.

Histograms are cumulative over every finished job in the database, as Prometheus expects
(counts only grow while rows are kept): ``rate(..._bucket[5m])`` gives recent latencies.
"""

import hmac
import ipaddress
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError
from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, Sum
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from config.broker import BrokerUnavailable, queue_depths
from config.celery import Queue
from ranking.models import Ranking, RankingTask
from ranking.rank.selectors import (
    ranking_pool_count,
    ranking_pool_target,
    ranking_queue_summary,
)
from sampler.jobs.selectors import jobs_count_by_kind
from sampler.jobs.selectors import queue_depths as jobs_waiting_by_queue
from sampler.models import GenerationJob
from sampler.workers.selectors import worker_heartbeat_list, workers_live_by_queue

logger = logging.getLogger(__name__)

# Upper bounds (seconds) of the latency histograms' buckets.
GENERATION_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)
SUGGESTION_BUCKETS = (0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120)


# Selectors: the application's numbers.


def rankings_submitted_since(since: datetime) -> int:
    return Ranking.objects.filter(submitted_at__gte=since).count()


@dataclass(frozen=True)
class Distribution:
    """Cumulative bucket counts (``le`` seconds -> rows at or below), count and sum."""

    buckets: dict[float, int]
    count: int
    total_seconds: float


def _distribution(queryset, field: str, bounds: tuple[float, ...]) -> Distribution:
    aggregates = {
        f"le_{index}": Count("pk", filter=Q(**{f"{field}__lte": timedelta(seconds=bound)}))
        for index, bound in enumerate(bounds)
    }
    row = queryset.order_by().aggregate(count=Count("pk"), total=Sum(field), **aggregates)
    total = row["total"] or timedelta(0)
    return Distribution(
        buckets={bound: row[f"le_{index}"] for index, bound in enumerate(bounds)},
        count=row["count"],
        total_seconds=total.total_seconds(),
    )


def generation_duration_by_purpose() -> dict[str, Distribution]:
    """How long generation jobs ran on a worker (start to finish), succeeded ones, by purpose."""
    finished = GenerationJob.objects.filter(
        status=GenerationJob.Status.SUCCEEDED, started_at__isnull=False, finished_at__isnull=False
    ).annotate(
        run_time=ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
    )
    return {
        purpose: _distribution(finished.filter(purpose=purpose), "run_time", GENERATION_BUCKETS)
        for purpose in GenerationJob.Purpose.values
    }


def suggestion_latency() -> Distribution:
    """What a trainer waited for suggestions: from the request to the finished job (queue wait
    included), succeeded jobs."""
    finished = GenerationJob.objects.filter(
        status=GenerationJob.Status.SUCCEEDED,
        purpose=GenerationJob.Purpose.SUGGESTION,
        finished_at__isnull=False,
    ).annotate(
        wait=ExpressionWrapper(F("finished_at") - F("created_at"), output_field=DurationField())
    )
    return _distribution(finished, "wait", SUGGESTION_BUCKETS)


# The collector.


def _histogram(name: str, documentation: str, labels: list[str]) -> HistogramMetricFamily:
    return HistogramMetricFamily(name, documentation, labels=labels, unit="seconds")


def _gauge_by(
    name: str, documentation: str, label: str, values: Mapping[str, float]
) -> GaugeMetricFamily:
    """A gauge with one label: a sample per key of ``values``."""
    gauge = GaugeMetricFamily(name, documentation, labels=[label])
    for key, value in values.items():
        gauge.add_metric([key], value)
    return gauge


def _answered(
    name: str,
    documentation: str,
    what: str,
    unavailable: type[Exception],
    read: Callable[[], Iterator],
) -> Iterator:
    """An ``up`` gauge ``name`` (1 when ``read()`` answered) and the families it read; 0 and a
    warning, and nothing more, when it raised ``unavailable``."""
    up = GaugeMetricFamily(name, documentation)
    try:
        families = list(read())
    except unavailable as error:
        logger.warning("Metrics: %s unavailable: %s", what, error)
        up.add_metric([], 0)
        yield up
        return
    up.add_metric([], 1)
    yield up
    yield from families


class TandemCollector(Collector):
    def describe(self) -> list:
        # Names only: registering the collector must not query anything.
        return [
            GaugeMetricFamily("tandem_broker_up", ""),
            GaugeMetricFamily("tandem_queue_depth", "", labels=["queue"]),
            GaugeMetricFamily("tandem_database_up", ""),
            GaugeMetricFamily("tandem_jobs", "", labels=["kind", "status"]),
            GaugeMetricFamily("tandem_jobs_waiting", "", labels=["queue"]),
            GaugeMetricFamily("tandem_ranking_tasks", "", labels=["status"]),
            GaugeMetricFamily("tandem_ranking_pool_tasks", "", labels=["status"]),
            GaugeMetricFamily("tandem_ranking_pool_target_tasks", ""),
            GaugeMetricFamily("tandem_rankings_last_hour", ""),
            GaugeMetricFamily("tandem_workers_live", "", labels=["queue"]),
            GaugeMetricFamily("tandem_worker_heartbeat_age_seconds", "", labels=["worker"]),
            _histogram("tandem_generation_duration", "", ["purpose"]),
            _histogram("tandem_suggestion_latency", "", []),
        ]

    def collect(self) -> Iterator:
        yield from _answered(
            "tandem_broker_up",
            "1 when the Celery broker answered.",
            "broker",
            BrokerUnavailable,
            self._broker_families,
        )
        yield from _answered(
            "tandem_database_up",
            "1 when the database answered.",
            "database",
            DatabaseError,
            self._database_families,
        )

    def _broker_families(self) -> Iterator:
        depths = queue_depths(timeout=settings.BROKER_PROBE_TIMEOUT)
        yield _gauge_by(
            "tandem_queue_depth", "Messages waiting in each Celery queue.", "queue", depths
        )

    def _database_families(self) -> Iterator:
        now = timezone.now()
        jobs = GaugeMetricFamily(
            "tandem_jobs", "Background work by kind and state.", labels=["kind", "status"]
        )
        for kind, by_status in jobs_count_by_kind().items():
            for status, rows in by_status.items():
                jobs.add_metric([kind, status], rows)
        yield jobs
        depths = jobs_waiting_by_queue()
        yield _gauge_by(
            "tandem_jobs_waiting",
            "Queued jobs per queue, from the database (the broker may hold extra copies).",
            "queue",
            {queue.value: depths.get(queue.value, 0) for queue in Queue},
        )

        yield _gauge_by(
            "tandem_ranking_tasks",
            "Ranking tasks by state, every project's, gold copies included.",
            "status",
            ranking_queue_summary(tasks=RankingTask.objects.all()),
        )
        yield _gauge_by(
            "tandem_ranking_pool_tasks",
            "Open ranking tasks: ready for trainers or being prepared.",
            "status",
            ranking_pool_count(),
        )
        yield GaugeMetricFamily(
            "tandem_ranking_pool_target_tasks",
            "Open ranking tasks the pool fill keeps: every active project's pool, with demand.",
            value=ranking_pool_target(),
        )
        yield GaugeMetricFamily(
            "tandem_rankings_last_hour",
            "Rankings submitted in the last hour.",
            value=rankings_submitted_since(now - timedelta(hours=1)),
        )

        yield _gauge_by(
            "tandem_workers_live",
            "Workers with a recent heartbeat, per queue they consume.",
            "queue",
            workers_live_by_queue(now=now),
        )
        yield _gauge_by(
            "tandem_worker_heartbeat_age_seconds",
            "Seconds since each worker's last heartbeat.",
            "worker",
            {
                worker.name: max(0.0, (now - worker.last_seen).total_seconds())
                for worker in worker_heartbeat_list()
            },
        )

        generation = _histogram(
            "tandem_generation_duration",
            "Run time of succeeded generation jobs on a worker, by purpose.",
            ["purpose"],
        )
        for purpose, distribution in generation_duration_by_purpose().items():
            generation.add_metric(
                [purpose], _buckets(distribution), sum_value=distribution.total_seconds
            )
        yield generation
        suggestion = _histogram(
            "tandem_suggestion_latency",
            "Request to result of succeeded suggestion jobs (queue wait included).",
            [],
        )
        distribution = suggestion_latency()
        suggestion.add_metric([], _buckets(distribution), sum_value=distribution.total_seconds)
        yield suggestion


def _buckets(distribution: Distribution) -> list[tuple[str, float]]:
    buckets = [(str(bound), rows) for bound, rows in distribution.buckets.items()]
    return [*buckets, ("+Inf", distribution.count)]


COLLECTOR = TandemCollector()
REGISTRY.register(COLLECTOR)


# The endpoint.


def metrics_allowed(request: HttpRequest) -> bool:
    """A bearer token equal to ``METRICS_TOKEN``, or a client address in
    ``METRICS_ALLOWED_CIDRS`` (the address the connection came from: behind a proxy, the
    proxy's)."""
    token = settings.METRICS_TOKEN
    authorization = request.headers.get("Authorization", "")
    if token and authorization.startswith("Bearer "):
        return hmac.compare_digest(authorization.removeprefix("Bearer ").encode(), token.encode())
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(
        address in ipaddress.ip_network(cidr, strict=False)
        for cidr in settings.METRICS_ALLOWED_CIDRS
    )


def metrics_registry() -> CollectorRegistry:
    """The default registry; under a multi-process server (``PROMETHEUS_MULTIPROC_DIR`` set,
    e.g. gunicorn with several workers) the request metrics of every process, merged, plus
    Tandem's collector."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    registry.register(COLLECTOR)
    return registry


def metrics_view(request: HttpRequest) -> HttpResponse:
    if not metrics_allowed(request):
        return HttpResponse(
            "Forbidden: send Authorization: Bearer <METRICS_TOKEN>, or scrape from an address "
            "in METRICS_ALLOWED_CIDRS.\n",
            status=403,
            content_type="text/plain",
        )
    return HttpResponse(generate_latest(metrics_registry()), content_type=CONTENT_TYPE_LATEST)
