from django.urls import path

from labeling import views

app_name = "labeling"

urlpatterns = [
    path("", views.conversation_list, name="conversation-list"),
]
