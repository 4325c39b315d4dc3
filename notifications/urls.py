from django.urls import path

import project.converters  # noqa: F401  (registers <id:…>)
from notifications import alerts_api, alerts_views, api, views

urlpatterns = [
    path("alerts/", alerts_views.alert_list_page, name="alerts"),
    path("notifications/", views.notifications_page, name="notifications"),
    path("notifications/rules/add/", views.rule_add, name="alert-rule-add"),
    path("notifications/rules/<id:rule_id>/", views.rule_edit, name="alert-rule"),
    path("notifications/rules/<id:rule_id>/delete", views.rule_delete, name="alert-rule-delete"),
    path("notifications/webhooks/add/", views.webhook_add, name="webhook-add"),
    path("notifications/webhooks/<id:webhook_id>/", views.webhook_detail, name="webhook"),
    path("notifications/webhooks/<id:webhook_id>/edit/", views.webhook_edit, name="webhook-edit"),
    path(
        "notifications/webhooks/<id:webhook_id>/delete",
        views.webhook_delete,
        name="webhook-delete",
    ),
    path(
        "notifications/webhooks/<id:webhook_id>/rotate-secret",
        views.webhook_rotate_secret,
        name="webhook-rotate-secret",
    ),
    path("notifications/webhooks/<id:webhook_id>/test", views.webhook_test, name="webhook-test"),
]

api_urlpatterns = [
    path("alerts", alerts_api.AlertListApi.as_view(), name="api-alerts"),
    path("alert-rules", api.AlertRuleListApi.as_view(), name="api-alert-rules"),
    path("alert-rules/<id:rule_id>", api.AlertRuleDetailApi.as_view(), name="api-alert-rule"),
    path("webhooks", api.WebhookListApi.as_view(), name="api-webhooks"),
    path("webhooks/<id:webhook_id>", api.WebhookDetailApi.as_view(), name="api-webhook"),
    path(
        "webhooks/<id:webhook_id>/rotate-secret",
        api.WebhookRotateSecretApi.as_view(),
        name="api-webhook-rotate-secret",
    ),
    path(
        "webhooks/<id:webhook_id>/deliveries",
        api.WebhookDeliveryListApi.as_view(),
        name="api-webhook-deliveries",
    ),
    path("webhooks/<id:webhook_id>/test", api.WebhookTestApi.as_view(), name="api-webhook-test"),
]
