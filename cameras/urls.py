from django.urls import path

from cameras import api, views

urlpatterns = [
    path("cameras/", views.camera_list, name="cameras"),
    path("cameras/<str:camera_id>/", views.camera_detail, name="camera"),
    path("cameras/<str:camera_id>/publish", views.camera_publish, name="camera-publish"),
    path("cameras/<str:camera_id>/snapshot.jpg", views.camera_snapshot, name="camera-snapshot"),
]

api_urlpatterns = [
    path("cameras", api.CameraListApi.as_view(), name="api-cameras"),
    path("cameras/<str:camera_id>", api.CameraDetailApi.as_view(), name="api-camera"),
    path("actions/actions/send", views.frame_ingest_view, name="api-frame-ingest"),
]
