from rest_framework import serializers
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.roles import IsTrainer
from labeling.selectors import conversation_list


class ConversationListApi(APIView):
    permission_classes = [IsTrainer]

    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        title = serializers.CharField()
        owner = serializers.CharField(source="owner.username")
        status = serializers.CharField()
        turn_count = serializers.IntegerField()
        created_at = serializers.DateTimeField()
        updated_at = serializers.DateTimeField()

    def get(self, request: Request) -> Response:
        conversations = conversation_list(
            user=request.user,
            status=request.query_params.get("status", ""),
            search=request.query_params.get("q", "")[:200],
        )
        paginator = LimitOffsetPagination()
        page = paginator.paginate_queryset(conversations, request, view=self)
        return paginator.get_paginated_response(self.OutputSerializer(page, many=True).data)
