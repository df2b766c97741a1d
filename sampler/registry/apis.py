from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.roles import IsTrainer, is_admin
from sampler.registry.selectors import model_version_list


class ModelVersionOutputSerializer(serializers.Serializer):
    """What any trainer may see of a model version: no server paths."""

    id = serializers.IntegerField()
    name = serializers.CharField()
    kind = serializers.CharField()
    source = serializers.CharField()
    parent_id = serializers.IntegerField(allow_null=True)
    training_run_id = serializers.IntegerField(allow_null=True)
    metrics = serializers.JSONField()
    is_active = serializers.BooleanField()
    created_at = serializers.DateTimeField()

    class Meta:
        ref_name = "ModelVersion"


class ModelVersionStaffOutputSerializer(ModelVersionOutputSerializer):
    path = serializers.CharField(
        required=False, help_text="Staff only: where the weights are on the server."
    )

    class Meta:
        ref_name = "ModelVersionWithPath"


class ModelVersionListApi(APIView):
    permission_classes = [IsTrainer]

    @extend_schema(
        responses={
            200: OpenApiResponse(
                ModelVersionStaffOutputSerializer(many=True),
                description="Every model version; `path` is included for staff only.",
            )
        }
    )
    def get(self, request: Request) -> Response:
        serializer = (
            ModelVersionStaffOutputSerializer
            if is_admin(request.user)
            else ModelVersionOutputSerializer
        )
        return Response(serializer(model_version_list(), many=True).data)
