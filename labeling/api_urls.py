from django.urls import path

from labeling import apis

urlpatterns = [
    path("conversations/", apis.ConversationListApi.as_view(), name="api-conversation-list"),
]
