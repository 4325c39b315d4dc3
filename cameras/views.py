"""Pages (grid, player, camera settings, webcam publisher, latest still), Test source and the
frame-ingest endpoint."""

from __future__ import annotations

import copy
from urllib.parse import urlsplit

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, RequestDataTooBig, ValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from cameras.forms import CameraForm, SourceTestForm
from cameras.ingest import (
    IngestError,
    IngestResult,
    frame_ingest,
    ingest_outcome_count,
    timestamp_check,
)
from cameras.models import Camera
from cameras.publishing import latest_frame_get
from cameras.selectors import (
    camera_get_for_user,
    camera_health_many,
    camera_source_for_role,
    cameras_for_user,
)
from cameras.services import camera_create, camera_delete, camera_update
from cameras.source_test import SourceTestFailed, source_test_jpeg, source_test_rate_limit_hit
from cameras.zones import MAX_POINTS, MAX_POLYGONS, NAME_MAX
from organizations.authentication import api_user_required
from organizations.models import Organization
from organizations.permissions import (
    Action,
    ActionForbidden,
    organizations_allowing,
    permission_require,
    role_allows,
    roles_by_organization,
)
from organizations.selectors import organization_get_for_user, organizations_for_user
from project.api_errors import json_error, method_not_allowed
from project.json_input import JsonBodyError, request_json
from project.text_input import UnstorableText, text_storable_check

INGEST_FIELDS = ("streamName", "streamType", "frame", "timestamp", "camera_id")


def _camera_or_404(request: HttpRequest, camera_id: str) -> Camera:
    camera = camera_get_for_user(user=request.user, public_id=camera_id)
    if camera is None:
        raise Http404("No such camera.")
    return camera


def _organization_stream_settings(request: HttpRequest, organization: Organization) -> dict:
    """Where the organization's camera streams are served: its host metadata, for player.js and
    for every tile of camera_grid.js (a camera added after the grid was loaded included)."""
    host = organization.server_host_url.strip()
    scheme = "wss" if request.is_secure() else "ws"
    if "://" in host:
        given_scheme, _, host = host.partition("://")
        scheme = "wss" if given_scheme.lower() in {"https", "wss"} else "ws"
    host = host.rstrip("/")
    if host and urlsplit(f"//{host}").port is None:
        host = f"{host}:{organization.ws_port}"
    return {
        "scheme": scheme,
        # Blank server_host_url: the page's own host (and port), which is what one daphne serves.
        "host": host,
        "retry_seconds": settings.CAMERA_PLAYER_RETRY_SECONDS,
    }


def _stream_settings(request: HttpRequest, camera: Camera) -> dict:
    """What player.js needs to open the camera's WebSocket and send actions."""
    return {
        **_organization_stream_settings(request, camera.organization),
        "camera_id": camera.public_id,
        "path": camera.stream_path,
        "ingest_url": "/api/v1/actions/actions/send",
    }


@login_required
def camera_list(request: HttpRequest) -> HttpResponse:
    cameras = list(cameras_for_user(user=request.user).select_related("organization"))
    health = camera_health_many(cameras=cameras)
    roles = roles_by_organization(user=request.user)
    # (camera, its health, whether its tile links to the webcam publisher)
    tiles = [
        (
            camera,
            health[camera.public_id],
            camera.is_push and role_allows(roles.get(camera.organization_id), Action.PUBLISH),
        )
        for camera in cameras
    ]
    # What camera_grid.js needs for every tile, those of cameras added after the page was
    # loaded included: each camera's organization, and where that organization streams from.
    grid = {
        "organizations": {
            organization.pk: {
                "name": organization.name,
                "can_publish": role_allows(roles.get(organization.pk), Action.PUBLISH),
                "stream": _organization_stream_settings(request, organization),
            }
            for organization in organizations_for_user(user=request.user)
        }
    }
    context = {
        "tiles": tiles,
        "grid": grid,
        "can_add": any(role_allows(role, Action.MANAGE_CAMERAS) for role in roles.values()),
        # The blank tile carries the publisher link only for those who may publish somewhere.
        "can_publish_somewhere": any(
            organization["can_publish"] for organization in grid["organizations"].values()
        ),
    }
    return render(request, "cameras/list.html", context)


@login_required
def camera_detail(request: HttpRequest, camera_id: str) -> HttpResponse:
    camera = _camera_or_404(request, camera_id)
    return render(
        request,
        "cameras/detail.html",
        {
            "camera": camera,
            "source": camera_source_for_role(camera, camera.member_role),
            "can_publish": role_allows(camera.member_role, Action.PUBLISH),
            "can_manage": role_allows(camera.member_role, Action.MANAGE_CAMERAS),
            "health": camera_health_many(cameras=[camera])[camera.public_id],
            "stream": _stream_settings(request, camera),
            "zones_settings": _zones_settings(camera),
        },
    )


def _zones_settings(camera: Camera) -> dict:
    """What the zones editor (static/js/zones_editor.js) starts from, with the model's limits."""
    return {
        "api": reverse("api-camera", args=[camera.public_id]),
        "zones": camera.zones,
        "motion_masks": camera.motion_masks,
        "can_manage": role_allows(camera.member_role, Action.MANAGE_CAMERAS),
        "limits": {"polygons": MAX_POLYGONS, "points": MAX_POINTS, "name": NAME_MAX},
    }


def _permission_check(request: HttpRequest, camera: Camera, action: Action) -> None:
    """403 (with the reason) unless the user may do `action` to the camera."""
    try:
        permission_require(
            user=request.user,
            organization=camera.organization,
            action=action,
            role=camera.member_role,
        )
    except ActionForbidden as refusal:
        raise PermissionDenied(refusal.message) from None


def _camera_to_manage(request: HttpRequest, camera_id: str) -> Camera:
    """The camera, if the user may change it: 404 outside their organizations, 403 below admin."""
    camera = _camera_or_404(request, camera_id)
    _permission_check(request, camera, Action.MANAGE_CAMERAS)
    return camera


def _camera_form_page(request: HttpRequest, form: CameraForm, **context) -> HttpResponse:
    return render(
        request,
        "cameras/form.html",
        {
            "form": form,
            "detector_fields": ("detectors", "min_confidence", "onnx_model", "onnx_labels"),
            **context,
        },
        status=400 if form.is_bound and form.errors else 200,
    )


@login_required
def camera_add(request: HttpRequest) -> HttpResponse:
    organizations = organizations_allowing(user=request.user, action=Action.MANAGE_CAMERAS)
    if not organizations.exists():
        raise PermissionDenied(
            "Only admins and owners of an organization may add cameras to it, and you are "
            "neither in any of yours."
        )
    form = CameraForm(request.POST or None, organizations=organizations.order_by("name"))
    if request.method == "POST" and form.is_valid():
        try:
            camera = camera_create(
                organization=form.cleaned_data["organization"], **form.camera_settings()
            )
        except ValidationError as invalid:
            form.add_error(None, invalid)
        else:
            messages.success(request, f"Added {camera.name}.")
            return redirect("camera", camera_id=camera.public_id)
    return _camera_form_page(request, form, camera=None, can_manage=True)


@login_required
def camera_edit(request: HttpRequest, camera_id: str) -> HttpResponse:
    """The camera's settings: a form for admins and owners, read-only for everyone else."""
    camera = _camera_or_404(request, camera_id)
    if request.method == "POST":
        _permission_check(request, camera, Action.MANAGE_CAMERAS)
        # Validated on a copy: an invalid form must not rename the camera shown on the page.
        form = CameraForm(request.POST, instance=copy.copy(camera))
        if form.is_valid():
            try:
                camera_update(camera=camera, **form.changed_camera_settings())
            except ValidationError as invalid:
                form.add_error(None, invalid)
            else:
                messages.success(request, f"Saved {camera.name}.")
                return redirect("camera", camera_id=camera.public_id)
        return _camera_form_page(request, form, camera=camera, can_manage=True)
    can_manage = role_allows(camera.member_role, Action.MANAGE_CAMERAS)
    form = CameraForm(
        instance=camera,
        read_only=not can_manage,
        # Credentials in the source only for those who may see them.
        initial={"source": camera_source_for_role(camera, camera.member_role)},
    )
    return _camera_form_page(request, form, camera=camera, can_manage=can_manage)


@login_required
@require_POST
def camera_enabled_set(request: HttpRequest, camera_id: str, *, enabled: bool) -> HttpResponse:
    camera = camera_update(camera=_camera_to_manage(request, camera_id), enabled=enabled)
    messages.success(request, f"{camera.name} is {'enabled' if enabled else 'disabled'}.")
    return redirect("camera", camera_id=camera.public_id)


@login_required
@require_POST
def camera_delete_view(request: HttpRequest, camera_id: str) -> HttpResponse:
    camera = _camera_to_manage(request, camera_id)
    if request.POST.get("confirm") != "yes":
        messages.error(request, "Tick the box to confirm: deleting a camera deletes its events.")
        return redirect("camera-edit", camera_id=camera.public_id)
    camera_delete(camera=camera)
    messages.success(request, f"Deleted {camera.name} with its events.")
    return redirect("cameras")


def _source_test_wait(user, organization_id: int) -> int:
    """0 when the user manages the organization's cameras and has a test left this minute,
    else the seconds until they have; Http404 or ActionForbidden as the pages answer."""
    organization = organization_get_for_user(user=user, organization_id=organization_id)
    if organization is None:
        raise Http404("No such organization among yours.")
    permission_require(user=user, organization=organization, action=Action.MANAGE_CAMERAS)
    return source_test_rate_limit_hit(user=user)


@api_user_required
async def camera_source_test(request: HttpRequest, user) -> HttpResponse:
    """POST a source (not saved): one frame of it as a JPEG, or why not as JSON."""
    if request.method != "POST":
        return method_not_allowed("POST", "Use POST.")
    try:
        form = SourceTestForm(request.POST)
        valid = form.is_valid()
    except RequestDataTooBig:
        return json_error(413, "The request is too large.", "too_large")
    if not valid:
        problems = [f"{name}: {' '.join(errors)}" for name, errors in form.errors.items()]
        return json_error(400, " ".join(problems), "invalid")
    try:
        wait = await sync_to_async(_source_test_wait)(user, form.cleaned_data["organization"])
    except Http404 as missing:
        return json_error(404, str(missing), "not_found")
    except ActionForbidden as refusal:
        return json_error(403, refusal.message, "forbidden")
    if wait:
        response = json_error(429, f"Too many source tests: try again in {wait} s.", "rate_limited")
        response["Retry-After"] = str(wait)
        return response
    try:
        jpeg = await source_test_jpeg(
            form.cleaned_data["source"],
            max_width=form.cleaned_data["max_width"] or 640,
            quality=form.cleaned_data["jpeg_quality"] or 75,
        )
    except SourceTestFailed as failure:
        return json_error(422, failure.message, failure.code)
    return HttpResponse(jpeg, content_type="image/jpeg", headers={"Cache-Control": "no-store"})


@login_required
def camera_publish(request: HttpRequest, camera_id: str) -> HttpResponse:
    camera = _camera_or_404(request, camera_id)
    _permission_check(request, camera, Action.PUBLISH)
    return render(
        request,
        "cameras/publish.html",
        {
            "camera": camera,
            "source": camera_source_for_role(camera, camera.member_role),
            "stream": _stream_settings(request, camera),
        },
    )


@never_cache
@login_required
def camera_snapshot(request: HttpRequest, camera_id: str) -> HttpResponse:
    """The camera's latest frame as a JPEG, for the grid's tiles (no WebSocket per tile)."""
    camera = _camera_or_404(request, camera_id)
    frame = latest_frame_get(camera.public_id)
    if frame is None:
        return HttpResponse(status=204)
    return HttpResponse(frame.jpeg, content_type="image/jpeg")


def _parse_ingest_body(request: HttpRequest) -> dict:
    try:
        data = request_json(request, max_bytes=settings.CAMERA_INGEST_MAX_BYTES)
    except JsonBodyError as error:
        raise IngestError(error.status, error.message, error.code) from None
    if not isinstance(data, dict):
        raise IngestError(400, "The request body must be a JSON object.", "malformed")
    missing = [field for field in INGEST_FIELDS if field not in data]
    if missing:
        raise IngestError(400, f"Missing field(s): {', '.join(missing)}.", "missing_fields")
    for field in ("streamName", "streamType", "frame", "camera_id"):
        if not isinstance(data[field], str):
            raise IngestError(400, f"{field} must be a string.", "invalid_field")
        try:
            text_storable_check(data[field], field=field)
        except UnstorableText as refused:
            raise IngestError(400, refused.message, "invalid_characters") from None
    if data["streamType"] != "frame":
        raise IngestError(400, 'streamType must be "frame".', "invalid_stream_type")
    if not data["frame"]:
        raise IngestError(400, "frame is empty.", "invalid_base64")
    timestamp_check(data["timestamp"])
    return data


def _ingest(request: HttpRequest, user) -> IngestResult:
    data = _parse_ingest_body(request)
    camera = camera_get_for_user(user=user, public_id=data["camera_id"])
    if camera is None:
        raise IngestError(404, "No such camera among yours.", "not_found")
    return frame_ingest(
        camera=camera,
        frame_b64=data["frame"],
        timestamp=data["timestamp"],
        role=camera.member_role,
    )


@api_user_required
async def frame_ingest_view(request: HttpRequest, user) -> JsonResponse:
    if request.method != "POST":
        return method_not_allowed("POST", "Use POST.")
    try:
        # Parsing, decoding and detection are CPU work: off the event loop.
        result = await sync_to_async(_ingest)(request, user)
    except IngestError as error:
        ingest_outcome_count(error=error)
        return json_error(error.status, error.message, error.code)
    except Exception as error:
        ingest_outcome_count(error=error)
        raise
    ingest_outcome_count(result=result)
    return JsonResponse(result.as_dict())
