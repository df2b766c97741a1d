"""Admins' door to every job: its state, retry, cancel."""

from django.core.exceptions import ValidationError
from django.http import Http404
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.plumbing import ResolvedComponent
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.roles import IsStaff
from config.api import ApiView, BrokerUnavailableResponse, no_body_fields
from config.api_schema import (
    CANCEL_CONFLICT,
    RETRY_CONFLICT,
    ErrorDocumentingAutoSchema,
    queue_unreachable,
)
from sampler.jobs.kinds import (
    job_kind_missing_message,
    job_kind_named,
    job_kind_of,
    job_kinds,
    job_missing_message,
)
from sampler.jobs.models import Job, job_error_summary
from sampler.jobs.selectors import job_queue_position, queue_depths
from sampler.jobs.services import job_cancel, job_cancel_refusal, job_retry


def _job_kind_schema() -> dict:
    """A registered kind of job's name, as the schema shows it: the names are read from the
    registry when the schema is made (every app has registered its kinds by then), not copied
    here. The ``kind`` in the jobs API's paths and in a job's state."""
    return {"type": "string", "enum": sorted(kind.name for kind in job_kinds())}


class JobKindField(serializers.CharField):
    """The name of a registered kind of job: in the schema, the component ``JobKindEnum``
    (``_job_kind_schema``)."""


class JobKindFieldExtension(OpenApiSerializerFieldExtension):
    target_class = JobKindField

    def map_serializer_field(self, auto_schema, direction):
        # A component named here: left inline, the enum would be named by the schema's
        # post-processing after the field ("KindEnum"), renaming the model versions' enum of
        # that name.
        component = ResolvedComponent(
            name="JobKindEnum",
            type=ResolvedComponent.SCHEMA,
            object="JobKindEnum",
            schema=_job_kind_schema(),
        )
        auto_schema.registry.register_on_missing(component)
        return component.ref


class JobStateSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = JobKindField()
    status = serializers.CharField()
    queue = serializers.CharField()
    queue_position = serializers.IntegerField()
    attempts = serializers.IntegerField()
    worker = serializers.CharField()
    error = serializers.CharField(
        help_text="The exception's own line; the traceback stays in the record."
    )
    created_at = serializers.DateTimeField()
    queued_at = serializers.DateTimeField(allow_null=True)
    published_at = serializers.DateTimeField(allow_null=True)
    started_at = serializers.DateTimeField(allow_null=True)
    heartbeat_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)


def _state(kind: str, job: Job) -> dict:
    return JobStateSerializer(
        {
            **{
                field: getattr(job, field)
                for field in JobStateSerializer().fields
                if hasattr(job, field)
            },
            "kind": kind,
            "error": job_error_summary(error=job.error),
            "queue_position": job_queue_position(job=job),
        }
    ).data


def _job(kind: str, job_id: int) -> Job:
    try:
        model = job_kind_named(kind).model
    except LookupError:
        raise Http404(job_kind_missing_message(kind)) from None
    job = model.objects.filter(pk=job_id).first()
    # Kinds that share a table (generation jobs, ranking preparation) each answer for theirs.
    if job is None or job_kind_of(job).name != kind:
        # Worded as the kind's own API words its missing rows, whichever path asked.
        raise Http404(job_missing_message(kind))
    return job


class JobKindSchema(ErrorDocumentingAutoSchema):
    """``kind`` in the path is one of the registered kinds of jobs (``_job_kind_schema``)."""

    def get_override_parameters(self):
        kind = OpenApiParameter(
            "kind",
            _job_kind_schema(),
            OpenApiParameter.PATH,
            description="The kind of job; any other name is a 404.",
        )
        return [*super().get_override_parameters(), kind]


class JobApi(ApiView):
    """A door to one job, ``/api/jobs/<kind>/<id>/...``: for staff."""

    permission_classes = [IsStaff]
    schema = JobKindSchema()


class JobDetailApi(JobApi):
    """A job's state: its status, queue and place in it, attempts and last error."""

    @extend_schema(responses={200: JobStateSerializer})
    def get(self, request: Request, kind: str, job_id: int) -> Response:
        return Response(_state(kind, _job(kind, job_id)))


class JobRetryApi(JobApi):
    """Queue a failed or cancelled job again (a training run resumes from its checkpoint)."""

    @extend_schema(
        request=None,
        responses={
            409: RETRY_CONFLICT,
            202: JobStateSerializer,
            503: queue_unreachable(JobStateSerializer),
        },
    )
    def post(self, request: Request, kind: str, job_id: int) -> Response:
        no_body_fields(request)
        job = _job(kind, job_id)
        try:
            publication = job_retry(job=job)
        except ValidationError as error:
            return Response({"detail": " ".join(error.messages)}, status=status.HTTP_409_CONFLICT)
        state = _state(kind, _job(kind, job_id))
        if publication.failed:
            return BrokerUnavailableResponse(
                "Queued again; the job queue is unreachable right now, so it will run once "
                "the queue is back.",
                job=state,
            )
        return Response(state, status=status.HTTP_202_ACCEPTED)


class JobCancelApi(JobApi):
    """Cancel a queued or running job (cancelling a cancelled one again answers the same)."""

    @extend_schema(request=None, responses={200: JobStateSerializer, 409: CANCEL_CONFLICT})
    def post(self, request: Request, kind: str, job_id: int) -> Response:
        no_body_fields(request)
        job = job_cancel(job=_job(kind, job_id))
        if conflict := job_cancel_refusal(job=job):
            return Response({"detail": conflict}, status=status.HTTP_409_CONFLICT)
        return Response(_state(kind, _job(kind, job_id)))


class QueueDepthsApi(ApiView):
    """Jobs waiting per queue."""

    permission_classes = [IsStaff]

    @extend_schema(responses={200: {"type": "object", "additionalProperties": {"type": "integer"}}})
    def get(self, request: Request) -> Response:
        return Response(queue_depths())
