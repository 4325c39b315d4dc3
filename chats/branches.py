"""Reads of a chat's branches. A chat's messages form a tree: each message's `parent` is the one
it follows, and messages with the same parent are alternatives of each other (a regenerated
reply, an edited prompt). The user looks at one path through the tree, from the first prompt
to `Chat.current_leaf`; every other path stays stored and reachable by switching to it.

Chats are small (hundreds of messages), so a chat's tree is read in one query and walked in
Python for the pages. A reply's history is the exception: it is read on every prompt, so only
its branch is read, with a recursive query (the same SQL on SQLite and PostgreSQL).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from django.db import connection

from chats.assistants import Turn
from chats.models import Chat, Message


@dataclass
class ChatTree:
    messages: dict[int, Message]
    # Children of each message (None: the roots), oldest first.
    children: dict[int | None, list[int]]

    def path_to(self, leaf_id: int) -> list[Message]:
        """The messages from the root down to `leaf_id`, oldest first."""
        path: list[Message] = []
        current = self.messages.get(leaf_id)
        while current is not None:
            path.append(current)
            current = self.messages.get(current.parent_id) if current.parent_id else None
        path.reverse()
        return path

    def newest_leaf_below(self, message_id: int) -> int:
        """Following the newest child at each step: the branch a switch to `message_id` shows
        (the alternative as it was last continued)."""
        while self.children.get(message_id):
            message_id = self.children[message_id][-1]
        return message_id

    def siblings_of(self, message: Message) -> list[int]:
        return self.children.get(message.parent_id, [message.pk])

    def default_leaf(self, chat: Chat) -> int | None:
        if chat.current_leaf_id in self.messages:
            return chat.current_leaf_id
        # No leaf chosen (a chat whose leaf was deleted): the newest message's branch.
        return max(self.messages.values(), key=_age).pk if self.messages else None


def _age(message: Message) -> tuple:
    return (message.created_at, message.pk)


def chat_tree(*, chat_id: int) -> ChatTree:
    messages = list(Message.objects.filter(chat_id=chat_id).order_by("created_at", "id"))
    children: dict[int | None, list[int]] = defaultdict(list)
    for message in messages:
        children[message.parent_id].append(message.pk)
    return ChatTree(messages={m.pk: m for m in messages}, children=dict(children))


def chat_branch(*, chat: Chat, through: int | None = None) -> list[Message]:
    """The branch shown: to the chat's current leaf, or (with `through`, a message id of this
    chat) the branch that goes through that message. Each message carries `sibling_ids`, the
    ids of its alternatives including itself, oldest first (`1/2` in the page)."""
    tree = chat_tree(chat_id=chat.pk)
    if through is not None and through in tree.messages:
        leaf = tree.newest_leaf_below(through)
        # A branch through `through` that the current leaf is already on stays as it is.
        current = tree.default_leaf(chat)
        if current is not None and through in {m.pk for m in tree.path_to(current)}:
            leaf = current
    else:
        leaf = tree.default_leaf(chat)
    if leaf is None:
        return []
    path = tree.path_to(leaf)
    for message in path:
        message.sibling_ids = tree.siblings_of(message)
    return path


def chat_turns_before(*, message: Message) -> list[Turn]:
    """The history a reply is generated from: the messages of its branch before it that have
    text (failed or stopped replies keep their partial text, which is still history)."""
    if message.parent_id is None:
        return []
    # Up the branch from the reply's parent, one primary-key lookup a message, rather than
    # every message of the chat (their text included) walked in Python: a long chat would make
    # every prompt read all of it. Django's ORM has no recursive queries.
    table = connection.ops.quote_name(Message._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH RECURSIVE branch (id, parent_id, role, content, depth) AS (
                SELECT id, parent_id, role, content, 0 FROM {table}
                WHERE id = %s AND chat_id = %s
                UNION ALL
                SELECT m.id, m.parent_id, m.role, m.content, branch.depth + 1
                FROM {table} m JOIN branch ON m.id = branch.parent_id
                WHERE m.chat_id = %s
            )
            SELECT role, content FROM branch WHERE content <> '' ORDER BY depth DESC
            """,
            [message.parent_id, message.chat_id, message.chat_id],
        )
        return [Turn(role=role, content=content) for role, content in cursor.fetchall()]
