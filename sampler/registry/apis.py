from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.roles import IsStaff, IsTrainer, is_admin
from config.api import (
    ApiView,
    StrictCharField,
    StrictChoiceField,
    StrictDictField,
    StrictIdField,
    StrictIntegerField,
    validated_input,
)
from config.idempotency import idempotent
from config.text import validate_one_line
from sampler.registry import services
from sampler.registry.models import MAX_CONTEXT_LENGTH, ModelVersion
from sampler.registry.selectors import model_version_list


class ModelVersionOutputSerializer(serializers.Serializer):
    """What trainers see of a version: never where it is served from."""

    id = serializers.IntegerField()
    name = serializers.CharField()
    kind = serializers.CharField()
    source = serializers.CharField()
    backend = serializers.CharField()
    context_length = serializers.IntegerField(allow_null=True)
    parent_id = serializers.IntegerField(allow_null=True)
    training_run_id = serializers.IntegerField(allow_null=True)
    metrics = serializers.JSONField()
    is_active = serializers.BooleanField()
    created_at = serializers.DateTimeField()

    class Meta:
        ref_name = "ModelVersion"


class ModelVersionStaffOutputSerializer(ModelVersionOutputSerializer):
    """Admins also see the serving configuration (paths, server URLs, option names)."""

    path = serializers.CharField(
        required=False, help_text="Staff only: where the weights are on the server."
    )
    backend_options = serializers.JSONField(
        required=False, help_text="Staff only: the backend's options (server URL, key's variable)."
    )
    description = serializers.CharField(required=False, help_text="Staff only.")

    class Meta:
        ref_name = "ModelVersionWithPath"


def _output(version_or_versions, request: Request, *, many: bool = False):
    serializer = (
        ModelVersionStaffOutputSerializer
        if is_admin(request.user)
        else ModelVersionOutputSerializer
    )
    return serializer(version_or_versions, many=many).data


class ModelVersionListApi(ApiView):
    """GET: the registered versions (trainers). POST: register one with its serving backend
    (admins)."""

    def get_permissions(self):
        return [IsStaff()] if self.request.method == "POST" else [IsTrainer()]

    class ModelVersionInputSerializer(serializers.Serializer):
        name = StrictCharField(max_length=200, validators=[validate_one_line])
        kind = StrictChoiceField(choices=ModelVersion.Kind.values, default=ModelVersion.Kind.POLICY)
        path = StrictCharField(max_length=1000, required=False, default="", allow_blank=True)
        backend = StrictChoiceField(
            choices=ModelVersion.Backend.values, default=ModelVersion.Backend.TRANSFORMERS
        )
        backend_options = StrictDictField(required=False, default=dict)
        context_length = StrictIntegerField(
            required=False, allow_null=True, min_value=1, max_value=MAX_CONTEXT_LENGTH
        )
        description = StrictCharField(max_length=5000, required=False, default="", allow_blank=True)
        parent_id = StrictIdField(required=False, allow_null=True)

    @extend_schema(
        operation_id="model_versions_list",
        responses={
            200: OpenApiResponse(
                ModelVersionStaffOutputSerializer(many=True),
                description="Every model version; `path` is included for staff only, with the "
                "serving options.",
            )
        },
    )
    def get(self, request: Request) -> Response:
        return Response(_output(model_version_list(), request, many=True))

    @extend_schema(
        request=ModelVersionInputSerializer, responses={201: ModelVersionStaffOutputSerializer}
    )
    @idempotent
    def post(self, request: Request) -> Response:
        data = validated_input(self.ModelVersionInputSerializer, request.data)
        parent = None
        if data.get("parent_id") is not None:
            parent = ModelVersion.objects.filter(pk=data["parent_id"]).first()
            if parent is None:
                raise serializers.ValidationError({"parent_id": "No model version with that id."})
        version = services.model_version_register(
            name=data["name"],
            kind=data["kind"],
            path=data["path"],
            backend=data["backend"],
            backend_options=data["backend_options"],
            context_length=data.get("context_length"),
            description=data["description"],
            parent=parent,
        )
        return Response(_output(version, request), status=status.HTTP_201_CREATED)


class ModelVersionDetailApi(ApiView):
    """GET one version (trainers); PATCH its serving configuration (admins)."""

    def get_permissions(self):
        return [IsStaff()] if self.request.method == "PATCH" else [IsTrainer()]

    class ModelVersionPatchSerializer(serializers.Serializer):
        path = StrictCharField(max_length=1000, required=False, allow_blank=True)
        backend = StrictChoiceField(choices=ModelVersion.Backend.values, required=False)
        backend_options = StrictDictField(required=False)
        context_length = StrictIntegerField(
            required=False, allow_null=True, min_value=1, max_value=MAX_CONTEXT_LENGTH
        )

    @extend_schema(
        responses={
            200: OpenApiResponse(
                ModelVersionStaffOutputSerializer,
                description="The version; `path` is included for staff only, with the serving "
                "options.",
            )
        }
    )
    def get(self, request: Request, version_id: int) -> Response:
        return Response(_output(get_object_or_404(ModelVersion, pk=version_id), request))

    @extend_schema(
        request=ModelVersionPatchSerializer, responses={200: ModelVersionStaffOutputSerializer}
    )
    def patch(self, request: Request, version_id: int) -> Response:
        version = get_object_or_404(ModelVersion, pk=version_id)
        data = validated_input(self.ModelVersionPatchSerializer, request.data)
        version = services.model_version_serving_update(version=version, **data)
        return Response(_output(version, request))
