from django.urls import path

from ranking import views

app_name = "ranking"

urlpatterns = [
    path("rank/", views.rank, name="rank"),
    path("exports/", views.export_list, name="exports"),
]
