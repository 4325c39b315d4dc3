"""JSON API for chats and their messages (DRF). Streaming a reply is in `views` (SSE)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from chats.api_models import MODEL_HELP, ChatModelField
from chats.branches import chat_branch
from chats.model_choice import chat_model_set
from chats.models import Chat, Message
from chats.selectors import chat_get_for_user, chats_for_user
from chats.services import (
    ChatInputError,
    branch_switch,
    chat_create,
    chat_delete,
    chat_rename,
    messages_expire_stale,
)
from organizations.selectors import organization_default_for_user, organization_get_for_user
from project.api_errors import object_body
from project.pagination import Pagination
from project.query_params import IdField


class ChatOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = Chat
        fields = ["id", "organization", "title", "model", "created_at", "updated_at"]
        extra_kwargs = {"model": {"help_text": MODEL_HELP}}


class MessageOutputSerializer(serializers.ModelSerializer):
    siblings = serializers.SerializerMethodField(
        help_text="The ids of this message's alternatives, itself included, oldest first "
        "(replies regenerated for the same prompt, edits of the same prompt)."
    )

    class Meta:
        model = Message
        fields = [
            "id",
            "chat",
            "parent",
            "siblings",
            "role",
            "content",
            "status",
            "error",
            "created_at",
            "updated_at",
        ]

    def get_siblings(self, message: Message) -> list[int]:
        # Messages read through chats.branches carry their alternatives; a single message
        # read otherwise (a stop's answer) is told alone.
        return getattr(message, "sibling_ids", [message.pk])


class MessagePagination(Pagination):
    default_limit = 200
    max_limit = 1000


def _chat_or_404(request, chat_id: int) -> Chat:
    chat = chat_get_for_user(user=request.user, chat_id=chat_id)
    if chat is None:
        raise NotFound()
    return chat


class ChatListApi(APIView):
    pagination_class = Pagination

    class InputSerializer(serializers.Serializer):
        organization = IdField(required=False)
        title = serializers.CharField(required=False, allow_blank=True, max_length=120)
        model = ChatModelField(required=False)

    @extend_schema(summary="List your chats", responses=ChatOutputSerializer(many=True))
    def get(self, request):
        paginator = self.pagination_class()
        chats = paginator.paginate_queryset(chats_for_user(user=request.user), request, view=self)
        return paginator.get_paginated_response(ChatOutputSerializer(chats, many=True).data)

    @extend_schema(
        summary="Start a chat",
        description="`organization` may be left out by a member of exactly one organization.",
        request=InputSerializer,
        responses={201: ChatOutputSerializer},
    )
    def post(self, request):
        serializer = self.InputSerializer(data=object_body(request))
        serializer.is_valid(raise_exception=True)
        organization_id = serializer.validated_data.get("organization")
        if organization_id is None:
            organization = organization_default_for_user(user=request.user)
            if organization is None:
                raise ValidationError(
                    {
                        "organization": [
                            "You belong to more than one organization (or to none): pass "
                            '"organization": <id> (see GET /api/v1/organizations).'
                        ]
                    }
                )
        else:
            organization = organization_get_for_user(
                user=request.user, organization_id=organization_id
            )
            if organization is None:
                # The same words whether it does not exist or is someone else's.
                raise ValidationError(
                    {
                        "organization": [
                            f"You are not a member of an organization {organization_id}."
                        ]
                    }
                )
        try:
            chat = chat_create(
                user=request.user,
                organization=organization,
                title=serializer.validated_data.get("title", ""),
            )
        except ChatInputError as exc:
            raise ValidationError({"title": [exc.message]}) from None
        if serializer.validated_data.get("model"):
            chat = chat_model_set(chat=chat, model=serializer.validated_data["model"])
        return Response(ChatOutputSerializer(chat).data, status=status.HTTP_201_CREATED)


class ChatDetailApi(APIView):
    class ModelInputSerializer(serializers.Serializer):
        model = ChatModelField(required=False)

    @extend_schema(summary="Get a chat", responses=ChatOutputSerializer)
    def get(self, request, chat_id: int):
        return Response(ChatOutputSerializer(_chat_or_404(request, chat_id)).data)

    @extend_schema(
        summary="Rename a chat or change its model",
        description="Pass `title`, `model` or both; nothing changes unless both are valid.",
        request=inline_serializer(
            "ChatUpdate",
            {
                "title": serializers.CharField(
                    required=False, max_length=120, help_text="Not blank."
                ),
                "model": ChatModelField(required=False),
            },
        ),
        responses=ChatOutputSerializer,
    )
    def patch(self, request, chat_id: int):
        chat = _chat_or_404(request, chat_id)
        body = object_body(request)
        if "title" not in body and "model" not in body:
            raise ValidationError({"body": ['Pass "title", "model" or both.']})
        # The model is checked first, so a refused one renames nothing.
        model_input = self.ModelInputSerializer(data=body)
        model_input.is_valid(raise_exception=True)
        if "title" in body:
            try:
                chat = chat_rename(chat=chat, title=body["title"])
            except ChatInputError as exc:
                raise ValidationError({"title": [exc.message]}) from None
        if "model" in body:
            chat = chat_model_set(chat=chat, model=model_input.validated_data["model"])
        return Response(ChatOutputSerializer(chat).data)

    @extend_schema(summary="Delete a chat and its messages", responses={204: None})
    def delete(self, request, chat_id: int):
        chat_delete(chat=_chat_or_404(request, chat_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


def _branch_page(request, view: APIView, chat: Chat, through: int | None = None) -> Response:
    # A reply whose run was lost must not be listed as `streaming` forever.
    messages_expire_stale(chat=chat)
    paginator = MessagePagination()
    messages = paginator.paginate_queryset(
        chat_branch(chat=chat, through=through), request, view=view
    )
    return paginator.get_paginated_response(MessageOutputSerializer(messages, many=True).data)


class ChatMessageListApi(APIView):
    class QuerySerializer(serializers.Serializer):
        message = IdField(required=False)

    def get(self, request, chat_id: int):
        """The branch being shown, oldest first; `?message=<id>`: the branch through that
        message instead (without switching to it)."""
        chat = _chat_or_404(request, chat_id)
        query = self.QuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        return _branch_page(request, self, chat, through=query.validated_data.get("message"))


# POST answers a page like the message list's GET, but drf-spectacular wraps only GET lists in
# their pagination: say so here.
BRANCH_PAGE = inline_serializer(
    name="MessageBranchPage",
    fields={
        "count": serializers.IntegerField(),
        "next": serializers.URLField(allow_null=True),
        "previous": serializers.URLField(allow_null=True),
        "results": MessageOutputSerializer(many=True),
    },
)


class ChatBranchApi(APIView):
    class InputSerializer(serializers.Serializer):
        message_id = IdField(help_text="A message of this chat, on the branch to show.")

    @extend_schema(
        summary="Switch to the branch through a message",
        description="The chat then shows (and continues) the branch that goes through "
        "`message_id`, as it was last continued: page through alternatives with the ids in "
        "a message's `siblings`. Answers the branch's messages, as the message list does.",
        request=InputSerializer,
        responses=BRANCH_PAGE,
    )
    def post(self, request, chat_id: int):
        chat = _chat_or_404(request, chat_id)
        serializer = self.InputSerializer(data=object_body(request))
        serializer.is_valid(raise_exception=True)
        try:
            chat = branch_switch(chat=chat, message_id=serializer.validated_data["message_id"])
        except ChatInputError as exc:
            raise NotFound(exc.message) from None
        return _branch_page(request, self, chat)
