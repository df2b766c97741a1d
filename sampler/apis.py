from django.conf import settings
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.roles import IsTrainer, is_admin
from labeling.models import Message
from sampler import services
from sampler.selectors import generation_job_get, model_version_list


class SampleOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    index = serializers.IntegerField()
    text = serializers.CharField()
    token_count = serializers.IntegerField()
    finish_reason = serializers.CharField()
    logprob_sum = serializers.FloatField()


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
    error = serializers.CharField()
    notes = serializers.CharField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    duration_ms = serializers.IntegerField(allow_null=True)
    samples = SampleOutputSerializer(many=True, source="samples.all")


class GenerationJobCreateApi(APIView):
    """Queue ``n`` completions of a conversation prefix on the GPU queue."""

    permission_classes = [IsTrainer]

    class InputSerializer(serializers.Serializer):
        prefix_message_id = serializers.IntegerField(required=False)
        messages = serializers.ListField(
            child=serializers.DictField(), required=False, max_length=200
        )
        n = serializers.IntegerField(min_value=1)
        params = serializers.DictField(required=False, default=dict)
        seed = serializers.IntegerField(required=False, allow_null=True, min_value=0)
        role = serializers.ChoiceField(choices=["assistant", "user"], default="assistant")

        def validate_n(self, value: int) -> int:
            if value > settings.GENERATION_MAX_N:
                raise serializers.ValidationError(f"n must be at most {settings.GENERATION_MAX_N}.")
            return value

    @extend_schema(request=InputSerializer, responses={201: JobOutputSerializer})
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        prefix_message = None
        if "prefix_message_id" in data:
            messages = Message.objects.select_related("conversation")
            if not is_admin(request.user):
                messages = messages.filter(conversation__owner=request.user)
            prefix_message = get_object_or_404(messages, pk=data["prefix_message_id"])
        job = services.generation_job_create(
            prefix_message=prefix_message,
            messages=data.get("messages") if prefix_message is None else None,
            n=data["n"],
            params=data["params"],
            seed=data.get("seed"),
            role=data["role"],
            requested_by=request.user,
        )
        job = generation_job_get(job_id=job.pk, user=request.user)
        return Response(JobOutputSerializer(job).data, status=status.HTTP_201_CREATED)


class GenerationJobDetailApi(APIView):
    permission_classes = [IsTrainer]

    @extend_schema(responses={200: JobOutputSerializer})
    def get(self, request: Request, job_id: int) -> Response:
        return Response(
            JobOutputSerializer(generation_job_get(job_id=job_id, user=request.user)).data
        )


class ModelVersionListApi(APIView):
    permission_classes = [IsTrainer]

    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        name = serializers.CharField()
        kind = serializers.CharField()
        source = serializers.CharField()
        path = serializers.CharField()
        parent_id = serializers.IntegerField(allow_null=True)
        training_run_id = serializers.IntegerField(allow_null=True)
        metrics = serializers.JSONField()
        is_active = serializers.BooleanField()
        created_at = serializers.DateTimeField()

    @extend_schema(responses={200: OutputSerializer(many=True)})
    def get(self, request: Request) -> Response:
        return Response(self.OutputSerializer(model_version_list(), many=True).data)
