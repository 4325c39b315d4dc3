from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularRedocView,
    SpectacularSwaggerView,
)

from cameras.urls import api_urlpatterns as cameras_api
from chats.urls import api_urlpatterns as chats_api
from events.urls import api_urlpatterns as events_api
from notifications.alerts_urls import api_urlpatterns as alerts_api
from organizations.urls import api_urlpatterns as organizations_api
from project import views
from project.login_views import AdminLoginForm, LoginView

# The admin's log-in explains a lockout too (project.login_limits).
admin.site.login_form = AdminLoginForm

# The API's contract (project/openapi.py) and its documentation pages, from local files.
api_documentation = [
    path("schema", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("redoc", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
]

api_v1 = organizations_api + chats_api + cameras_api + events_api + api_documentation
api_v1 += alerts_api

urlpatterns = [
    path("", views.dashboard, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", views.metrics, name="metrics"),
    path("login/", LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("", include("organizations.urls")),
    path("", include("chats.urls")),
    path("", include("cameras.urls")),
    path("", include("events.urls")),
    path("", include("notifications.alerts_urls")),
]

handler400 = "project.views.bad_request"
handler403 = "project.views.permission_denied"
handler404 = "project.views.not_found"
handler500 = "project.views.server_error"
