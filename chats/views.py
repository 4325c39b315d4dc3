"""Pages (chat list, new chat, conversation, rename, delete) and the streaming endpoints:
send a prompt, regenerate a reply, edit a prompt (each answered as SSE), resume a reply (SSE),
stop a reply. Each adapts HTTP to `chats.replies` and back."""

from __future__ import annotations

from collections.abc import AsyncIterator

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib import messages as flash
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from chats.api import ChatMessageListApi, MessageOutputSerializer
from chats.branches import chat_branch
from chats.markdown_rendering import markdown_to_safe_html
from chats.models import Chat, Message
from chats.replies import (
    ChatNotFound,
    RateLimited,
    ReplyAsk,
    reply_start,
    reply_stop,
)
from chats.selectors import chat_get_for_user, chats_for_user, message_get_for_user
from chats.services import (
    ChatBusy,
    ChatInputError,
    chat_create,
    chat_delete,
    chat_rename,
    messages_expire_stale,
)
from chats.streaming.follow import StreamAccess, reply_events, reply_follow
from chats.streaming.protocol import StoredReply
from organizations.authentication import api_user_required
from organizations.revocation import acredential_for_request
from organizations.selectors import organization_get_for_user, organizations_for_user
from project.api_errors import json_error, method_not_allowed
from project.json_input import JsonBodyError, request_json
from project.query_params import ParamError, int_param

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


async def _stream_access_open(request: HttpRequest, user) -> StreamAccess:
    # Registered before the view checks the chat's access (see StreamAccess).
    return await StreamAccess(await acredential_for_request(request, user)).open()


def _body_object(request: HttpRequest, *, prompt_required: bool) -> dict | JsonResponse:
    if not prompt_required and not request.body:
        return {}
    try:
        body = request_json(request)
    except JsonBodyError as error:
        return json_error(error.status, error.message, error.code)
    if not isinstance(body, dict):
        example = '{"prompt": "..."}' if prompt_required else "{}"
        return json_error(400, f"The body must be a JSON object: {example}.", "malformed")
    return body


async def _reply_stream(request: HttpRequest, user, chat_id: int, ask: ReplyAsk) -> HttpResponse:
    """Start the reply `ask` asks for (see chats.replies) and answer it as Server-Sent Events
    (see chats.streaming.follow); or the JSON error."""
    access = await _stream_access_open(request, user)
    try:
        started = await reply_start(user=user, chat_id=chat_id, ask=ask)
    except ChatNotFound:
        await access.close()
        return _not_found()
    except ChatInputError as refused:
        await access.close()
        status = 404 if refused.code == "message_not_found" else 400
        return json_error(status, refused.message, refused.code)
    except RateLimited as limited:
        await access.close()
        response = json_error(429, str(limited), "rate_limited")
        response["Retry-After"] = str(limited.retry_after)
        return response
    except ChatBusy as busy:
        await access.close()
        return json_error(
            409,
            "A reply is still being generated in this chat: wait for it, or stop it.",
            "reply_in_progress",
            message_id=busy.streaming_message.pk,
        )
    except BaseException:
        await access.close()
        raise
    reply = started.reply
    events = reply_events(
        receiver=started.receiver,
        message_id=reply.pk,
        stored=StoredReply("", Message.Status.STREAMING, ""),
        access=access,
        organization_id=reply.chat.organization_id,
    )
    return _event_stream(events, message_id=reply.pk)


@api_user_required
async def message_create_stream(request: HttpRequest, user, chat_id: int) -> HttpResponse:
    """POST a prompt; the answer is the reply as Server-Sent Events."""
    body = _body_object(request, prompt_required=True)
    if isinstance(body, JsonResponse):
        return body
    return await _reply_stream(request, user, chat_id, ReplyAsk("prompt", body.get("prompt")))


@csrf_exempt  # api_user_for_request checks CSRF for sessions; tokens need none
async def chat_messages_endpoint(request: HttpRequest, chat_id: int) -> HttpResponse:
    """`POST`: send a prompt and stream the reply. `GET`: list the chat's messages (JSON)."""
    if request.method == "POST":
        return await message_create_stream(request, chat_id)
    if request.method == "GET":
        return await sync_to_async(_message_list_api)(request, chat_id=chat_id)
    return method_not_allowed("GET, POST", "Use GET to list messages or POST to send a prompt.")


@csrf_exempt
@api_user_required
async def reply_regenerate_stream(
    request: HttpRequest, user, chat_id: int, message_id: int
) -> HttpResponse:
    """POST: another reply to the prompt reply `message_id` answered, streamed as SSE; the
    earlier reply stays as its alternative."""
    if request.method != "POST":
        return method_not_allowed("POST", "Use POST.")
    body = _body_object(request, prompt_required=False)
    if isinstance(body, JsonResponse):
        return body
    ask = ReplyAsk("regenerate", message_id=message_id)
    return await _reply_stream(request, user, chat_id, ask)


@csrf_exempt
@api_user_required
async def prompt_edit_stream(
    request: HttpRequest, user, chat_id: int, message_id: int
) -> HttpResponse:
    """POST `{"prompt": ...}`: prompt `message_id` rewritten (the chat branches there) and its
    reply, streamed as SSE."""
    if request.method != "POST":
        return method_not_allowed("POST", "Use POST.")
    body = _body_object(request, prompt_required=True)
    if isinstance(body, JsonResponse):
        return body
    ask = ReplyAsk("edit", body.get("prompt"), message_id=message_id)
    return await _reply_stream(request, user, chat_id, ask)


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
        # Follow first, then read what is stored: text added in between is not lost.
        receiver = await reply_follow(message.pk, offset=offset)
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
    try:
        message = await reply_stop(user=user, chat_id=chat_id, message_id=message_id)
    except ChatNotFound:
        return _not_found()
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
    try:
        # ?message=<id> (a search hit): the branch that goes through that message.
        through = int_param(request.GET.get("message", ""), name="message")
    except ParamError:
        through = None
    messages = chat_branch(chat=chat, through=through)
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
        "regenerateUrl": reverse("chat-message-regenerate", args=[chat.pk, 0]),
        "editUrl": reverse("chat-message-edit", args=[chat.pk, 0]),
        "branchUrl": reverse("api-chat-branch", args=[chat.pk]),
        "messagesUrl": reverse("api-chat-messages", args=[chat.pk]),
        "modelsUrl": reverse("api-models"),
        "model": chat.model,
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
