from django.contrib import admin

from chats.models import Chat, Message


class MessageInline(admin.TabularInline):
    model = Message
    extra = 0
    fields = ["role", "status", "content", "error", "created_at"]
    readonly_fields = ["created_at"]


@admin.register(Chat)
class ChatAdmin(admin.ModelAdmin):
    list_display = ["display_title", "user", "organization", "created_at", "updated_at"]
    list_filter = ["organization"]
    search_fields = ["title", "user__username", "organization__name"]
    list_select_related = ["user", "organization"]
    raw_id_fields = ["user"]
    inlines = [MessageInline]


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["id", "chat", "role", "status", "created_at", "updated_at"]
    list_filter = ["status", "role", "chat__organization"]
    search_fields = ["content", "error", "chat__title", "chat__user__username"]
    list_select_related = ["chat"]
    raw_id_fields = ["chat"]
