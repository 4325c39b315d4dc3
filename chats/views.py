"""Pages (chat list, new chat, conversation, rename, delete) and the streaming endpoints:
send a prompt (SSE), resume a reply (SSE), stop a reply."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib import messages as flash
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from chats.api import ChatMessageListApi, MessageOutputSerializer
from chats.assistants import AssistantContext, Turn
from chats.markdown_rendering import markdown_to_safe_html
from chats.models import Chat, Message
from chats.runs import message_group, run_start, run_stop_request
from chats.selectors import (
    chat_get_for_user,
    chat_messages,
    chats_for_user,
    message_get_for_user,
    reply_inputs,
)
from chats.services import (
    ChatBusy,
    ChatInputError,
    chat_create,
    chat_delete,
    chat_rate_limit_hit,
    chat_rename,
    message_send,
    message_stop,
    messages_expire_stale,
    prompt_clean,
)
from chats.streaming import StoredReply, StreamAccess, reply_events
from organizations.authentication import api_user_required
from organizations.revocation import credential_for_request
from organizations.selectors import organization_get_for_user, organizations_for_user
from project.api_errors import json_error, method_not_allowed
from project.channel_layer import GroupReceiver
from project.json_input import JsonBodyError, request_json
from project.query_params import ParamError, int_param

# How long a stop request waits for the run to store the partial text and end.
STOP_WAIT_SECONDS = 5.0
STOP_POLL_SECONDS = 0.05
# A resume offset counts characters of one reply: far more than any reply holds.
RESUME_OFFSET_MAX = 10**12

_message_list_api = ChatMessageListApi.as_view()


def _not_found() -> JsonResponse:
    return json_error(404, "Not found.", "not_found")


def _event_stream(events: AsyncIterator[bytes], *, message_id: int) -> StreamingHttpResponse:
    response = StreamingHttpResponse(events, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    # Known before the first event, so a client can offer Stop (or resume) at once.
    response["X-Message-Id"] = str(message_id)
    return response


def _accept_prompt(
    user, chat_id: int, request: HttpRequest
) -> JsonResponse | tuple[Message, list[Turn], AssistantContext]:
    """Every check before a stream may start, then the stored `streaming` reply and what it is
    generated from; or the error answer."""
    chat = chat_get_for_user(user=user, chat_id=chat_id)
    if chat is None:
        return _not_found()
    try:
        body = request_json(request)
    except JsonBodyError as error:
        return json_error(error.status, error.message, error.code)
    if not isinstance(body, dict):
        return json_error(400, 'The body must be a JSON object: {"prompt": "..."}.', "malformed")
    try:
        prompt = prompt_clean(body.get("prompt"))
    except ChatInputError as exc:
        return json_error(400, exc.message, exc.code)
    retry_after = chat_rate_limit_hit(user=user)
    if retry_after:
        response = json_error(
            429,
            f"Too many prompts: the limit is {settings.CHAT_RATE_LIMIT_PER_MINUTE} a minute. "
            f"Try again in {retry_after} s.",
            "rate_limited",
        )
        response["Retry-After"] = str(retry_after)
        return response
    try:
        _, reply = message_send(chat=chat, prompt=prompt)
    except ChatBusy as busy:
        return json_error(
            409,
            "A reply is still being generated in this chat: wait for it, or stop it.",
            "reply_in_progress",
            message_id=busy.streaming_message.pk,
        )
    return reply, *reply_inputs(reply=reply)


async def _subscribe(message_id: int) -> GroupReceiver:
    # Joining never fails for an unreachable layer: the stream then goes on from the database.
    receiver = GroupReceiver(get_channel_layer(), where="sse", groups=[message_group(message_id)])
    await receiver.join()
    return receiver


async def _stream_access_open(request: HttpRequest, user) -> StreamAccess:
    # Registered before the view checks the chat's access (see StreamAccess). The credential is
    # read in a thread: it may load the session.
    credential = await sync_to_async(credential_for_request)(request, user)
    return await StreamAccess(credential).open()


@api_user_required
async def message_create_stream(request: HttpRequest, user, chat_id: int) -> HttpResponse:
    """POST a prompt; the answer is the reply as Server-Sent Events (see chats.streaming)."""
    access = await _stream_access_open(request, user)
    try:
        accepted = await sync_to_async(_accept_prompt)(user, chat_id, request)
        if isinstance(accepted, JsonResponse):
            await access.close()
            return accepted
        reply, turns, context = accepted
        # Join the reply's group before the run starts, so not one delta is missed.
        receiver = await _subscribe(reply.pk)
    except BaseException:
        await access.close()
        raise
    run_start(message_id=reply.pk, turns=turns, context=context)
    events = reply_events(
        receiver=receiver,
        message_id=reply.pk,
        stored=StoredReply("", Message.Status.STREAMING, ""),
        access=access,
        organization_id=reply.chat.organization_id,
    )
    return _event_stream(events, message_id=reply.pk)


@csrf_exempt  # api_user_for_request checks CSRF for sessions; tokens need none
async def chat_messages_endpoint(request: HttpRequest, chat_id: int) -> HttpResponse:
    """`POST`: send a prompt and stream the reply. `GET`: list the chat's messages (JSON)."""
    if request.method == "POST":
        return await message_create_stream(request, chat_id)
    if request.method == "GET":
        return await sync_to_async(_message_list_api)(request, chat_id=chat_id)
    return method_not_allowed("GET, POST", "Use GET to list messages or POST to send a prompt.")


@api_user_required
async def message_stream_resume(
    request: HttpRequest, user, chat_id: int, message_id: int
) -> HttpResponse:
    """GET a reply as SSE from `?offset=N` or `Last-Event-ID: N` (characters already held)."""
    if request.method != "GET":
        return method_not_allowed("GET", "Use GET.")
    raw_offset = request.GET.get("offset") or request.headers.get("Last-Event-ID") or "0"
    try:
        offset = int_param(raw_offset, name="offset", maximum=RESUME_OFFSET_MAX)
    except ParamError as error:
        return json_error(400, f"{error.message} It counts characters.", "invalid_offset")
    access = await _stream_access_open(request, user)
    try:
        message = await sync_to_async(message_get_for_user)(
            user=user, chat_id=chat_id, message_id=message_id
        )
        if message is None:
            await access.close()
            return _not_found()
        # Subscribe first, then read what is stored: a delta published in between is not lost.
        receiver = await _subscribe(message.pk)
    except BaseException:
        await access.close()
        raise
    events = reply_events(
        receiver=receiver,
        message_id=message.pk,
        offset=offset,
        access=access,
        organization_id=message.chat.organization_id,
    )
    return _event_stream(events, message_id=message.pk)


@api_user_required
async def message_stop_view(
    request: HttpRequest, user, chat_id: int, message_id: int
) -> HttpResponse:
    """POST: stop generating a reply; answers the reply as stored (status `stopped`)."""
    if request.method != "POST":
        return method_not_allowed("POST", "Use POST.")
    message = await sync_to_async(message_get_for_user)(
        user=user, chat_id=chat_id, message_id=message_id
    )
    if message is None:
        return _not_found()
    if message.status == Message.Status.STREAMING:
        delivered = await run_stop_request(message_id=message.pk)
        # The run stores the partial text as `stopped` before anything else; watch for that
        # (stopping is rare: polling is simpler than listening, and cannot miss the end).
        # Undelivered (the channel layer is away), we stop the stored reply at once: a run in
        # another process sees that at its next write and stops too.
        deadline = asyncio.get_running_loop().time() + (STOP_WAIT_SECONDS if delivered else 0)
        while message.status == Message.Status.STREAMING:
            if asyncio.get_running_loop().time() >= deadline:
                # No run answered: it was lost. Stop the stored reply ourselves.
                await sync_to_async(message_stop)(message=message)
                break
            await asyncio.sleep(STOP_POLL_SECONDS)
            await message.arefresh_from_db(fields=["status"])
        await message.arefresh_from_db()
    return JsonResponse(MessageOutputSerializer(message).data)


# --- pages ---------------------------------------------------------------------------------


def _chat_or_404(request: HttpRequest, chat_id: int) -> Chat:
    chat = chat_get_for_user(user=request.user, chat_id=chat_id)
    if chat is None:
        raise Http404("No such chat.")
    return chat


@login_required
def chat_list(request: HttpRequest) -> HttpResponse:
    chats = chats_for_user(user=request.user).select_related("organization")[:200]
    organizations = list(organizations_for_user(user=request.user).order_by("name"))
    return render(request, "chats/list.html", {"chats": chats, "organizations": organizations})


@login_required
@require_http_methods(["GET", "POST"])
def chat_new(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        # A typed or bookmarked /chats/new lands on the list, whose form starts a chat.
        return redirect("chats")
    try:
        organization_id = int_param(request.POST.get("organization", ""), name="organization")
    except ParamError:
        organization_id = None
    organization = (
        organization_get_for_user(user=request.user, organization_id=organization_id)
        if organization_id is not None
        else None
    )
    if organization is None:
        flash.error(request, "Choose one of your organizations for the new chat.")
        return redirect("chats")
    chat = chat_create(user=request.user, organization=organization)
    return redirect("chat", chat_id=chat.pk)


@login_required
def chat_detail(request: HttpRequest, chat_id: int) -> HttpResponse:
    chat = _chat_or_404(request, chat_id)
    messages_expire_stale(chat=chat)
    messages = list(chat_messages(chat=chat))
    for message in messages:
        # Only finished assistant replies are rendered as (sanitized) Markdown.
        message.html = (
            markdown_to_safe_html(message.content)
            if message.role == Message.Role.ASSISTANT and message.status != Message.Status.STREAMING
            else ""
        )
    streaming = next((m for m in messages if m.status == Message.Status.STREAMING), None)
    page_data = {
        "chatId": chat.pk,
        "sendUrl": reverse("chat-messages", args=[chat.pk]),
        "chatUrl": reverse("api-chat", args=[chat.pk]),
        "hasTitle": bool(chat.title),
        "streamUrl": reverse("chat-message-stream", args=[chat.pk, 0]),
        "stopUrl": reverse("chat-message-stop", args=[chat.pk, 0]),
        "promptMaxChars": settings.CHAT_PROMPT_MAX_CHARS,
        "resume": {"messageId": streaming.pk, "offset": len(streaming.content)}
        if streaming
        else None,
    }
    # The sidebar: the user's chats, newest first (the model's ordering), as on the list page.
    sidebar_chats = chats_for_user(user=request.user).select_related("organization")[:200]
    return render(
        request,
        "chats/detail.html",
        {
            "chat": chat,
            "chat_messages": messages,
            "page_data": page_data,
            "sidebar_chats": sidebar_chats,
        },
    )


@login_required
@require_POST
def chat_rename_page(request: HttpRequest, chat_id: int) -> HttpResponse:
    chat = _chat_or_404(request, chat_id)
    try:
        chat_rename(chat=chat, title=request.POST.get("title", ""))
    except ChatInputError as exc:
        flash.error(request, exc.message)
    return redirect("chat", chat_id=chat.pk)


@login_required
@require_POST
def chat_delete_page(request: HttpRequest, chat_id: int) -> HttpResponse:
    chat = _chat_or_404(request, chat_id)
    chat_delete(chat=chat)
    flash.success(request, f"Deleted “{chat.display_title}”.")
    return redirect("chats")
