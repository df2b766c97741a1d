from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.roles import IsTrainer
from sampler.registry.selectors import model_version_list


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
