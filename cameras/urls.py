from django.urls import path

from cameras import api, views

urlpatterns = [
    path("cameras/", views.camera_list, name="cameras"),
    # Before the camera's own URLs: "add" is no camera id (those are 12 random characters),
    # but "cameras/<camera_id>/" would take it for one.
    path("cameras/add/", views.camera_add, name="camera-add"),
    path("cameras/source-test", views.camera_source_test, name="camera-source-test"),
    path("cameras/<str:camera_id>/", views.camera_detail, name="camera"),
    path("cameras/<str:camera_id>/edit/", views.camera_edit, name="camera-edit"),
    path(
        "cameras/<str:camera_id>/disable",
        views.camera_enabled_set,
        {"enabled": False},
        name="camera-disable",
    ),
    path(
        "cameras/<str:camera_id>/enable",
        views.camera_enabled_set,
        {"enabled": True},
        name="camera-enable",
    ),
    path("cameras/<str:camera_id>/delete", views.camera_delete_view, name="camera-delete"),
    path("cameras/<str:camera_id>/publish", views.camera_publish, name="camera-publish"),
    path("cameras/<str:camera_id>/snapshot.jpg", views.camera_snapshot, name="camera-snapshot"),
]

api_urlpatterns = [
    path("cameras", api.CameraListApi.as_view(), name="api-cameras"),
    path("cameras/<str:camera_id>", api.CameraDetailApi.as_view(), name="api-camera"),
    path("actions/actions/send", views.frame_ingest_view, name="api-frame-ingest"),
]
