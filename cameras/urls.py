from django.urls import path

from cameras import api

urlpatterns: list = []

api_urlpatterns = [
    path("cameras", api.CameraListApi.as_view(), name="api-cameras"),
    path("cameras/<str:camera_id>", api.CameraDetailApi.as_view(), name="api-camera"),
]
