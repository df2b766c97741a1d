from contextlib import contextmanager

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.roles import IsTrainer, is_admin
from config.api import (
    ApiView,
    BrokerUnavailableResponse,
    StrictCharField,
    StrictChoiceField,
    StrictDictField,
    StrictIdField,
    StrictIntegerField,
    StrictObjectSerializer,
    no_body_fields,
    validated_input,
)
from config.api_schema import CANCEL_CONFLICT, RETRY_CONFLICT, queue_unreachable
from config.idempotency import idempotent
from labeling.models import Message
from sampler.generation import services
from sampler.generation.params import GenerationParams
from sampler.generation.selectors import generation_job_get
from sampler.jobs.selectors import job_queue_position
from sampler.jobs.services import job_cancel_refusal

TOO_MANY_UNFINISHED = OpenApiResponse(
    description="You have GENERATION_MAX_UNFINISHED_PER_USER jobs waiting or running: wait for "
    "some to finish, or cancel some (nothing is stored or queued)."
)


class SampleOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    index = serializers.IntegerField()
    text = serializers.CharField()
    token_count = serializers.IntegerField()
    finish_reason = serializers.CharField()
    logprob_sum = serializers.FloatField(allow_null=True)
    logprob_kind = serializers.CharField(help_text="What logprob_sum measures.")


class JobOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField()
    purpose = serializers.CharField()
    role = serializers.CharField()
    n = serializers.IntegerField()
    seed = serializers.IntegerField()
    params = serializers.JSONField()
    model_version = serializers.CharField(source="model_version.name")
    model_version_id = serializers.IntegerField()
    prefix_message_id = serializers.IntegerField(allow_null=True)
    prompt_messages = serializers.JSONField()
    error = serializers.SerializerMethodField(
        help_text="Why it failed; for trainers, an internal error is one sentence without details, "
        "and the model server's URL or weights path is left out."
    )
    notes = serializers.CharField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    duration_ms = serializers.IntegerField(allow_null=True)
    attempts = serializers.IntegerField()
    queue = serializers.CharField()
    queue_position = serializers.SerializerMethodField(
        help_text="Jobs waiting ahead of this one in its queue (0 once it runs)."
    )
    samples = SampleOutputSerializer(many=True, source="samples.all")

    def get_error(self, job) -> str:
        request = self.context.get("request")
        if request is not None and is_admin(request.user):
            return job.error
        return job.error_public

    def get_queue_position(self, job) -> int:
        return job_queue_position(job=job)


@contextmanager
def _param_errors_under_params():
    """The service names a bad sampling parameter by itself (``temperature``), as the HTML
    forms' fields are named; in the API those are keys of ``params``, so their messages (each
    names its parameter) are the ``params`` field's list."""
    try:
        yield
    except DjangoValidationError as error:
        names = set(GenerationParams.__dataclass_fields__)
        if hasattr(error, "error_dict") and set(error.message_dict) <= names:
            messages = [text for texts in error.message_dict.values() for text in texts]
            raise serializers.ValidationError({"params": messages}) from error
        raise


def _job_data(request: Request, job_id: int) -> dict:
    """The job as the caller may see it, read afresh (with its samples and queue position)."""
    return JobOutputSerializer(
        generation_job_get(job_id=job_id, user=request.user), context={"request": request}
    ).data


class PromptMessageInputSerializer(StrictObjectSerializer):
    role = StrictChoiceField(choices=["system", "user", "assistant"])
    content = StrictCharField(
        allow_blank=True, trim_whitespace=False, max_length=services.MAX_MESSAGE_CHARS
    )

    class Meta:
        ref_name = "PromptMessageInput"


class GenerationJobCreateApi(ApiView):
    """Queue ``n`` completions of a conversation prefix on the GPU queue."""

    permission_classes = [IsTrainer]

    class InputSerializer(serializers.Serializer):
        prefix_message_id = StrictIdField(required=False)
        messages = serializers.ListField(
            child=PromptMessageInputSerializer(),
            required=False,
            max_length=services.MAX_PREFIX_MESSAGES,
        )
        n = StrictIntegerField(min_value=1)
        # Checked by the service, exactly (no coercion; unknown names refused).
        params = StrictDictField(required=False, default=dict)
        seed = StrictIntegerField(
            required=False, allow_null=True, min_value=0, max_value=services.MAX_SEED
        )
        role = StrictChoiceField(choices=["assistant", "user"], default="assistant")

        def validate_n(self, value: int) -> int:
            if value > settings.GENERATION_MAX_N:
                raise serializers.ValidationError(f"n must be at most {settings.GENERATION_MAX_N}.")
            return value

        def validate(self, attrs: dict) -> dict:
            if ("prefix_message_id" in attrs) == ("messages" in attrs):
                raise serializers.ValidationError(
                    "Give either prefix_message_id or messages, exactly one of the two."
                )
            if "messages" in attrs:
                problem = services.turn_order_problem(attrs["messages"], role=attrs["role"])
                if problem:
                    raise serializers.ValidationError({"messages": problem})
            return attrs

    @extend_schema(
        request=InputSerializer,
        responses={
            201: JobOutputSerializer,
            429: TOO_MANY_UNFINISHED,
            503: queue_unreachable(JobOutputSerializer),
        },
    )
    @idempotent
    def post(self, request: Request) -> Response:
        data = validated_input(self.InputSerializer, request.data)
        prefix_message = None
        if "prefix_message_id" in data:
            # A ranking alternative is no turn of its conversation: nothing continues it.
            messages = Message.objects.select_related("conversation").filter(is_candidate=False)
            if not is_admin(request.user):
                messages = messages.filter(conversation__owner=request.user)
            prefix_message = messages.filter(pk=data["prefix_message_id"]).first()
            if prefix_message is None:
                # Another trainer's message is answered like a missing one: ids are not probed.
                raise serializers.ValidationError(
                    {"prefix_message_id": "No message with that id in your conversations."}
                )
        with _param_errors_under_params():
            job = services.generation_job_create(
                prefix_message=prefix_message,
                messages=(
                    [dict(message) for message in data["messages"]] if "messages" in data else None
                ),
                n=data["n"],
                params=data["params"],
                seed=data.get("seed"),
                role=data["role"],
                requested_by=request.user,
            )
        data = _job_data(request, job.pk)
        if job.publication.failed:
            return BrokerUnavailableResponse(
                "The job is saved but the job queue is unreachable right now; it will run once "
                "the queue is back. Poll the job for its state.",
                job=data,
            )
        return Response(data, status=status.HTTP_201_CREATED)


class GenerationJobDetailApi(ApiView):
    """A generation job with its samples, status and place in the queue (your own; admins:
    any)."""

    permission_classes = [IsTrainer]

    @extend_schema(responses={200: JobOutputSerializer})
    def get(self, request: Request, job_id: int) -> Response:
        return Response(_job_data(request, job_id))


class GenerationJobCancelApi(ApiView):
    """Cancel a queued or running job (your own; admins: any)."""

    permission_classes = [IsTrainer]

    @extend_schema(request=None, responses={200: JobOutputSerializer, 409: CANCEL_CONFLICT})
    def post(self, request: Request, job_id: int) -> Response:
        no_body_fields(request)
        job = generation_job_get(job_id=job_id, user=request.user)
        job = services.generation_job_cancel(job=job, user=request.user)
        if conflict := job_cancel_refusal(job=job):
            return Response({"detail": conflict}, status=status.HTTP_409_CONFLICT)
        return Response(_job_data(request, job_id))


class GenerationJobRetryApi(ApiView):
    """Queue a failed or cancelled job again (your own; admins: any)."""

    permission_classes = [IsTrainer]

    @extend_schema(
        request=None,
        responses={
            409: RETRY_CONFLICT,
            202: JobOutputSerializer,
            429: TOO_MANY_UNFINISHED,
            503: queue_unreachable(JobOutputSerializer),
        },
    )
    def post(self, request: Request, job_id: int) -> Response:
        no_body_fields(request)
        job = generation_job_get(job_id=job_id, user=request.user)
        try:
            publication = services.generation_job_retry(job=job, user=request.user)
        except services.TooManyUnfinishedJobs:
            raise  # 429, as for a new job
        except DjangoValidationError as error:
            # The job's state does not allow it (queued, running, succeeded): a conflict with
            # the job as it is, answered as /api/jobs/<kind>/<id>/retry/ answers it.
            return Response({"detail": " ".join(error.messages)}, status=status.HTTP_409_CONFLICT)
        data = _job_data(request, job_id)
        if publication.failed:
            return BrokerUnavailableResponse(
                "The job is queued again but the job queue is unreachable right now; it will "
                "run once the queue is back.",
                job=data,
            )
        return Response(data, status=status.HTTP_202_ACCEPTED)
