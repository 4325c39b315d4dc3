from __future__ import annotations

import pytest
from asgiref.sync import SyncToAsync
from django.db import connections

from tests.chats.fake_openai import FakeOpenAI


@pytest.fixture
def fake_openai():
    server = FakeOpenAI().start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _close_connections_of_the_shared_sync_thread():
    yield
    # The async ORM and database_sync_to_async outside a request (test bodies, generation runs)
    # run in asgiref's one shared thread; its connection must not outlive the test database.
    SyncToAsync.single_thread_executor.submit(connections.close_all).result(timeout=10)
