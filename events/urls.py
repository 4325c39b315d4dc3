from django.urls import path

import project.converters  # noqa: F401  (registers <id:…>)
from events import api, views

urlpatterns = [
    path("events/", views.event_list_page, name="events"),
    path("events/<id:event_id>", views.event_detail_page, name="event"),
]

api_urlpatterns = [
    path("events", api.EventListApi.as_view(), name="api-events"),
    path("events/<id:event_id>", api.EventDetailApi.as_view(), name="api-event"),
    path(
        "events/<id:event_id>/snapshot", api.EventSnapshotApi.as_view(), name="api-event-snapshot"
    ),
    path("events/<id:event_id>/clip", api.EventClipApi.as_view(), name="api-event-clip"),
    path(
        "cameras/<str:camera_id>/sessions",
        api.CameraSessionListApi.as_view(),
        name="api-camera-sessions",
    ),
    path(
        "cameras/<str:camera_id>/activity",
        api.CameraActivityApi.as_view(),
        name="api-camera-activity",
    ),
]
