from django.urls import path

import project.converters  # noqa: F401  (registers <id:…>)
from chats import api, api_models, api_search, search_views, views

urlpatterns = [
    path("chats/", views.chat_list, name="chats"),
    path("chats/new", views.chat_new, name="chat-new"),
    path("chats/search", search_views.chat_search_page, name="chat-search"),
    path("chats/<id:chat_id>/", views.chat_detail, name="chat"),
    path("chats/<id:chat_id>/rename", views.chat_rename_page, name="chat-rename"),
    path("chats/<id:chat_id>/delete", views.chat_delete_page, name="chat-delete"),
    # The seed's streaming path: POST a prompt, get Server-Sent Events (GET lists, as JSON).
    path("chats/<id:chat_id>/messages", views.chat_messages_endpoint, name="chat-messages"),
    path(
        "chats/<id:chat_id>/messages/<id:message_id>/stream",
        views.message_stream_resume,
        name="chat-message-stream",
    ),
    path(
        "chats/<id:chat_id>/messages/<id:message_id>/stop",
        views.message_stop_view,
        name="chat-message-stop",
    ),
    path(
        "chats/<id:chat_id>/messages/<id:message_id>/regenerate",
        views.reply_regenerate_stream,
        name="chat-message-regenerate",
    ),
    path(
        "chats/<id:chat_id>/messages/<id:message_id>/edit",
        views.prompt_edit_stream,
        name="chat-message-edit",
    ),
]

api_urlpatterns = [
    path("models", api_models.ModelListApi.as_view(), name="api-models"),
    path("chats", api.ChatListApi.as_view(), name="api-chats"),
    path("chats/search", api_search.ChatSearchApi.as_view(), name="api-chat-search"),
    path("chats/<id:chat_id>", api.ChatDetailApi.as_view(), name="api-chat"),
    path("chats/<id:chat_id>/export", api_search.ChatExportApi.as_view(), name="api-chat-export"),
    path("chats/<id:chat_id>/messages", views.chat_messages_endpoint, name="api-chat-messages"),
    path(
        "chats/<id:chat_id>/messages/<id:message_id>/stream",
        views.message_stream_resume,
        name="api-chat-message-stream",
    ),
    path(
        "chats/<id:chat_id>/messages/<id:message_id>/stop",
        views.message_stop_view,
        name="api-chat-message-stop",
    ),
    path(
        "chats/<id:chat_id>/messages/<id:message_id>/regenerate",
        views.reply_regenerate_stream,
        name="api-chat-message-regenerate",
    ),
    path(
        "chats/<id:chat_id>/messages/<id:message_id>/edit",
        views.prompt_edit_stream,
        name="api-chat-message-edit",
    ),
    path("chats/<id:chat_id>/branch", api.ChatBranchApi.as_view(), name="api-chat-branch"),
]
