"""`ws/alerts`: the bell's live alerts, one JSON text message per alert (the alert body of
`notifications.payloads` with `snapshot_url` and `url`, see `notifications.browser`).

Every member of an organization gets its alerts, viewers included. The socket joins the group of
each of the user's organizations as it connects (an organization joined later is heard from the
next connection on) and leaves them when it closes. Anonymous: accepted, then closed with 4401
(a browser sees the code; the handshake of a bad Origin is refused by `organizations.ws_auth`,
as for the camera stream). The socket holds one `OpenAccess` per organization in the process's
revocation registry (`organizations.revocation`), so a membership removed, a role lowered, a
token deleted or a logout closes it with 4403; the bell then connects again with what is left.
"""

from __future__ import annotations

import asyncio
import json

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from notifications.browser import alerts_group, server_loop_register
from organizations.revocation import (
    WEBSOCKET_CLOSE_CODE,
    OpenAccess,
    access_close,
    access_open,
    credential_for_websocket,
)
from organizations.selectors import organizations_for_user

ANONYMOUS_CLOSE_CODE = 4401


def _organization_pks(user) -> list[int]:
    return list(organizations_for_user(user=user).values_list("pk", flat=True))


class AlertsConsumer(AsyncWebsocketConsumer):
    accesses: list[OpenAccess]
    joined: list[str]
    accepted = False
    closing: asyncio.Future | None = None

    async def connect(self) -> None:
        self.accesses, self.joined = [], []
        credential = await database_sync_to_async(credential_for_websocket)(self.scope)
        if credential is None:
            await self.accept()
            await self.close(code=ANONYMOUS_CLOSE_CODE)
            return
        # Registered before the organizations are read, with no organization: a revocation
        # committed meanwhile matches it (see OpenAccess).
        first = OpenAccess(credential, end=self._access_revoked)
        self.accesses.append(first)
        await access_open(first)
        try:
            organization_pks = await database_sync_to_async(_organization_pks)(self.scope["user"])
            for index, organization_pk in enumerate(organization_pks):
                if index == 0:
                    first.organization_id = organization_pk
                    continue
                access = OpenAccess(
                    credential, end=self._access_revoked, organization_id=organization_pk
                )
                self.accesses.append(access)
                await access_open(access)
            server_loop_register(asyncio.get_running_loop())
            for organization_pk in organization_pks:
                if self._revoked:
                    break
                group = alerts_group(organization_pk)
                await self.channel_layer.group_add(group, self.channel_name)
                self.joined.append(group)
        except BaseException:
            # Channels dispatches no disconnect to a consumer whose connect raised.
            await self.disconnect(None)
            raise
        if self._revoked:
            # Before accept: the handshake is refused (HTTP 403), having left what it joined.
            await self.disconnect(None)
            await self.close()
            return
        self.accepted = True
        await self.accept()

    @property
    def _revoked(self) -> bool:
        return any(access.ended for access in self.accesses)

    async def alert_raised(self, message) -> None:
        if self._revoked:
            return  # revoked: closing, and not one more alert
        await self.send(text_data=json.dumps(message["alert"], separators=(",", ":")))

    async def receive(self, text_data=None, bytes_data=None) -> None:
        return  # one-way: whatever a client sends is ignored, never answered

    def _access_revoked(self) -> None:
        # On the event loop, from the revocation listener. Not accepted yet: `connect` sees it
        # and refuses the handshake.
        if self.accepted and self.closing is None:
            self.closing = asyncio.ensure_future(self.close(code=WEBSOCKET_CLOSE_CODE))

    async def _release(self) -> None:
        accesses, self.accesses = self.accesses, []
        for access in accesses:
            await access_close(access)

    async def disconnect(self, code) -> None:
        joined, self.joined = self.joined, []
        for group in joined:
            await self.channel_layer.group_discard(group, self.channel_name)
        await self._release()
