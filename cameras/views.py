"""Pages (grid, player, webcam publisher, latest still) and the frame-ingest endpoint."""

from __future__ import annotations

from urllib.parse import urlsplit

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache

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
from organizations.authentication import api_user_required
from organizations.permissions import (
    Action,
    ActionForbidden,
    permission_require,
    role_allows,
    roles_by_organization,
)
from project.api_errors import json_error, method_not_allowed
from project.json_input import JsonBodyError, request_json
from project.text_input import UnstorableText, text_storable_check

INGEST_FIELDS = ("streamName", "streamType", "frame", "timestamp", "camera_id")


def _camera_or_404(request: HttpRequest, camera_id: str) -> Camera:
    camera = camera_get_for_user(user=request.user, public_id=camera_id)
    if camera is None:
        raise Http404("No such camera.")
    return camera


def _stream_settings(request: HttpRequest, camera: Camera) -> dict:
    """What player.js needs to open the WebSocket: the organization's host metadata."""
    organization = camera.organization
    host = organization.server_host_url.strip()
    scheme = "wss" if request.is_secure() else "ws"
    if "://" in host:
        given_scheme, _, host = host.partition("://")
        scheme = "wss" if given_scheme.lower() in {"https", "wss"} else "ws"
    host = host.rstrip("/")
    if host and urlsplit(f"//{host}").port is None:
        host = f"{host}:{organization.ws_port}"
    return {
        "camera_id": camera.public_id,
        "scheme": scheme,
        # Blank server_host_url: the page's own host (and port), which is what one daphne serves.
        "host": host,
        "path": camera.stream_path,
        "ingest_url": "/api/v1/actions/actions/send",
        "retry_seconds": settings.CAMERA_PLAYER_RETRY_SECONDS,
    }


@login_required
def camera_list(request: HttpRequest) -> HttpResponse:
    cameras = list(cameras_for_user(user=request.user).select_related("organization"))
    health = camera_health_many(cameras=cameras)
    roles = roles_by_organization(user=request.user)
    tiles = [
        (
            camera,
            health[camera.public_id],
            role_allows(roles.get(camera.organization_id), Action.PUBLISH),
        )
        for camera in cameras
    ]
    # Where each tile opens its stream (a variant of it, see static/js/camera_grid.js).
    streams = {camera.public_id: _stream_settings(request, camera) for camera in cameras}
    return render(request, "cameras/list.html", {"tiles": tiles, "streams": streams})


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
            "health": camera_health_many(cameras=[camera])[camera.public_id],
            "stream": _stream_settings(request, camera),
        },
    )


@login_required
def camera_publish(request: HttpRequest, camera_id: str) -> HttpResponse:
    camera = _camera_or_404(request, camera_id)
    try:
        permission_require(
            user=request.user,
            organization=camera.organization,
            action=Action.PUBLISH,
            role=camera.member_role,
        )
    except ActionForbidden as refusal:
        raise PermissionDenied(refusal.message) from None
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
