from django.urls import path

from accounts import views
from config import converters  # noqa: F401  (registers <id:...>, canonical row ids)

app_name = "accounts"

urlpatterns = [
    path("", views.account, name="account"),
    path("tokens/", views.api_token_create, name="token-create"),
    path("tokens/<id:token_id>/revoke/", views.api_token_revoke, name="token-revoke"),
]
