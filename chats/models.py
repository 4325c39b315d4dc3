"""Chats and their messages. A chat belongs to one organization and one user."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from organizations.models import Organization


class Chat(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="chats")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="chats"
    )
    # Blank until the first prompt names it (see services.chat_title_from_prompt).
    title = models.CharField(max_length=120, blank=True)
    # The model replies are generated with; blank means settings.ASSISTANT_MODEL.
    model = models.CharField(max_length=200, blank=True)
    # The last message of the branch the user is looking at (see chats.branches); None for a
    # chat without messages.
    current_leaf = models.ForeignKey(
        "Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at", "-id"]
        indexes = [models.Index(fields=["user", "-updated_at"], name="chat_user_recent")]

    def __str__(self) -> str:
        return self.display_title

    @property
    def display_title(self) -> str:
        return self.title or "New chat"


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user", "User"
        ASSISTANT = "assistant", "Assistant"

    class Status(models.TextChoices):
        STREAMING = "streaming", "Streaming"
        COMPLETE = "complete", "Complete"
        STOPPED = "stopped", "Stopped"
        FAILED = "failed", "Failed"

    chat = models.ForeignKey(Chat, on_delete=models.CASCADE, related_name="messages")
    # The message this one answers or follows; None for a chat's first prompt. Messages with the
    # same parent are alternatives of each other: a regenerated reply, an edited prompt.
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children"
    )
    role = models.CharField(max_length=10, choices=Role.choices)
    content = models.TextField(blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.COMPLETE)
    # Why a reply failed, in a sentence a person can act on; blank otherwise.
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Bumped by every flush of a running reply: it is the run's heartbeat (see stale expiry).
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            models.Index(fields=["chat", "created_at", "id"], name="message_chat_order"),
            # Small: only replies being generated, for the busy check and stale expiry.
            models.Index(
                fields=["status", "updated_at"],
                name="message_streaming",
                condition=models.Q(status="streaming"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.role} #{self.pk} ({self.status})"
