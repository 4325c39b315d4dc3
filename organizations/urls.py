from django.urls import path

import project.converters  # noqa: F401  (registers <id:…>)
from organizations import api, views

urlpatterns = [
    path("organizations/", views.organizations_page, name="organizations"),
    path("organizations/<id:organization_id>/", views.organization_page, name="organization"),
    path(
        "organizations/<id:organization_id>/settings",
        views.organization_settings,
        name="organization-settings",
    ),
    path(
        "organizations/<id:organization_id>/delete",
        views.organization_delete_view,
        name="organization-delete",
    ),
    path(
        "organizations/<id:organization_id>/members/add",
        views.member_add_view,
        name="organization-member-add",
    ),
    path(
        "organizations/<id:organization_id>/members/<id:user_id>/role",
        views.member_role_view,
        name="organization-member-role",
    ),
    path(
        "organizations/<id:organization_id>/members/<id:user_id>/remove",
        views.member_remove_view,
        name="organization-member-remove",
    ),
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
    path(
        "organizations/<id:organization_id>/members",
        api.MemberListApi.as_view(),
        name="api-organization-members",
    ),
    path(
        "organizations/<id:organization_id>/members/<id:user_id>",
        api.MemberDetailApi.as_view(),
        name="api-organization-member",
    ),
]
