from django.urls import path

from accounts import views

app_name = "accounts"

urlpatterns = [
    path("", views.account, name="account"),
    path("tokens/", views.api_token_create, name="token-create"),
    path("tokens/<int:token_id>/revoke/", views.api_token_revoke, name="token-revoke"),
]
