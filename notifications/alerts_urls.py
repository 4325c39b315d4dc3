from django.urls import path

from notifications import alerts_api, alerts_views

urlpatterns = [
    path("alerts/", alerts_views.alert_list_page, name="alerts"),
]

api_urlpatterns = [
    path("alerts", alerts_api.AlertListApi.as_view(), name="api-alerts"),
]
