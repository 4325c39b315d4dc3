from django.urls import path

import project.converters  # noqa: F401  (registers <id:…>)
from organizations import api, views

urlpatterns = [
    path("organizations/", views.organizations_page, name="organizations"),
    path("account/tokens/", views.tokens, name="tokens"),
    path("account/tokens/regenerate", views.token_regenerate, name="token-regenerate"),
    path("account/tokens/<id:token_id>/revoke", views.token_revoke, name="token-revoke"),
]

api_urlpatterns = [
    path("auth/token", api.TokenCreateApi.as_view(), name="api-token"),
    path("organizations", api.OrganizationListApi.as_view(), name="api-organizations"),
    path(
        "organizations/<id:organization_id>",
        api.OrganizationDetailApi.as_view(),
        name="api-organization",
    ),
]
