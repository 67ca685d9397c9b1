"""GET /api/{user_id}/tasks/events on a real socket (tests/support/live_server.py): events in
commit order with sync tokens as ids, resuming with Last-Event-ID, heartbeats, bounds, expiry,
fan-out between processes through LISTEN/NOTIFY, and a clean end at shutdown."""

from __future__ import annotations

import logging
import signal
import time

import httpx
import pytest

from service.sync.tokens import SyncToken, decode_token
from support.app import assert_problem, create, test_settings
from support.live_server import live_server
from support.sync import EventReader, apply_changes, server_state, sync_once
from support.waiting import wait_until

DAY = 86400


@pytest.fixture
def serve(database_url, issuer, jwks_router):
    jwks_router.route(host="127.0.0.1").pass_through()  # respx mocks only the JWKS host

    def start(graceful_seconds: int = 10, **overrides):
        return live_server(test_settings(database_url, issuer, **overrides), graceful_seconds)

    return start


def http(server) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=server.base_url, timeout=10)


async def test_a_stream_sends_every_task_then_each_change_in_commit_order(serve, alice):
    async with serve() as server, http(server) as client:
        first = await create(client, alice, "first")
        second = await create(client, alice, "second")
        async with client.stream("GET", alice.url("/events"), headers=alice.headers) as response:
            assert response.headers["cache-control"] == "no-store"
            events = EventReader(response)
            listed = await events.events(2)
            assert [block.change() for block in listed] == [
                {"op": "upsert", "task": first},
                {"op": "upsert", "task": second},
            ]
            third = await create(client, alice, "third")
            renamed = (
                await client.patch(alice.url(f"/{first['id']}"), json={"title": "renamed"}, headers=alice.headers)
            ).json()
            await client.delete(alice.url(f"/{second['id']}"), headers=alice.headers)
            live = await events.events(3)
            assert [block.change() for block in live] == [
                {"op": "upsert", "task": third},
                {"op": "upsert", "task": renamed},
                {"op": "delete", "id": second["id"]},
            ]
        # An event's id is a sync token: /changes after the last one has nothing new.
        after = await client.get(alice.url("/changes"), params={"since": live[-1].id}, headers=alice.headers)
        assert after.status_code == 200 and after.json()["changes"] == []


async def test_last_event_id_resumes_without_a_gap(serve, alice):
    async with serve() as server, http(server) as client:
        tasks = [await create(client, alice, f"task {i}") for i in range(3)]
        state: dict = {}
        async with client.stream("GET", alice.url("/events"), headers=alice.headers) as response:
            blocks = await EventReader(response).events(3)
        apply_changes(state, [block.change() for block in blocks])
        # While disconnected:
        await client.patch(alice.url(f"/{tasks[0]['id']}/complete"), headers=alice.headers)
        await client.delete(alice.url(f"/{tasks[1]['id']}"), headers=alice.headers)
        await create(client, alice, "while away")
        headers = {**alice.headers, "Last-Event-ID": blocks[-1].id}
        # The header wins over the `since` of the URL the stream was first opened with.
        async with client.stream(
            "GET", alice.url("/events"), params={"since": blocks[0].id}, headers=headers
        ) as response:
            missed = await EventReader(response).events(3)
        apply_changes(state, [block.change() for block in missed])
        assert [block.change()["op"] for block in missed] == ["upsert", "delete", "upsert"]
        assert state == await server_state(client, alice)


async def test_an_idle_stream_sends_comment_heartbeats(serve, alice):
    async with serve(event_heartbeat_seconds=0.2) as server, http(server) as client:
        async with client.stream("GET", alice.url("/events"), headers=alice.headers) as response:
            block = await EventReader(response).block(within_seconds=5)
        assert block is not None and block.comments == ["keep-alive"] and block.data is None and block.id is None


async def test_streams_past_the_per_user_bound_get_503_with_retry_after(serve, alice, bob):
    async with serve(event_streams_per_user=1, event_streams_max=2) as server, http(server) as client:
        hub = server.app.state.event_hub
        async with client.stream("GET", alice.url("/events"), headers=alice.headers) as first:
            assert first.status_code == 200
            second = await client.get(alice.url("/events"), headers=alice.headers)
            assert_problem(second, 503, "too_many_streams")
            assert second.headers["retry-after"] == "5"
            async with client.stream("GET", bob.url("/events"), headers=bob.headers) as bobs:
                assert bobs.status_code == 200  # another user is not bound by alice's streams
        await wait_until(lambda: hub.open_streams == 0, 5, "closed streams free their slots")
        async with client.stream("GET", alice.url("/events"), headers=alice.headers) as again:
            assert again.status_code == 200


async def test_streams_past_the_process_bound_get_503(serve, make_user):
    users = [make_user() for _ in range(3)]
    async with serve(event_streams_max=2) as server, http(server) as client:
        async with (
            client.stream("GET", users[0].url("/events"), headers=users[0].headers) as one,
            client.stream("GET", users[1].url("/events"), headers=users[1].headers) as two,
        ):
            assert (one.status_code, two.status_code) == (200, 200)
            refused = await client.get(users[2].url("/events"), headers=users[2].headers)
            assert_problem(refused, 503, "too_many_streams")
            assert refused.headers["retry-after"]
            assert server.app.state.event_hub.open_streams == 2


@pytest.mark.parametrize(
    "headers, field",
    [
        pytest.param({"Last-Event-ID": "not a token!"}, "Last-Event-ID", id="last-event-id-bad-characters"),
        pytest.param({"Last-Event-ID": "QUJD"}, "Last-Event-ID", id="last-event-id-garbled"),
    ],
)
async def test_a_bad_last_event_id_is_a_422_naming_it(serve, alice, headers, field):
    async with serve() as server, http(server) as client:
        response = await client.get(alice.url("/events"), headers={**alice.headers, **headers})
        problem = assert_problem(response, 422, "validation_failed")
        assert field in {error["field"] for error in problem["errors"]}
        assert server.app.state.event_hub.open_streams == 0


async def test_an_expired_last_event_id_is_410(serve, alice):
    async with serve() as server, http(server) as client:
        old = SyncToken(0, int(time.time() - 31 * DAY)).encode(alice.id)
        response = await client.get(alice.url("/events"), headers={**alice.headers, "Last-Event-ID": old})
        assert_problem(response, 410, "sync_token_expired")
        assert server.app.state.event_hub.open_streams == 0


async def test_a_stream_ends_when_its_token_expires_and_reconnecting_loses_nothing(serve, alice):
    async with serve(event_heartbeat_seconds=0.3) as server, http(server) as client:
        await create(client, alice, "before")
        state: dict = {}
        token = decode_token(await sync_once(client, alice, state, None), alice.id, "since")
        # A token issued just under the retention ago: its stream has about 1.5 s left.
        nearly = SyncToken(token.seq, int(time.time() - 30 * DAY + 1.5)).encode(alice.id)
        async with client.stream(
            "GET", alice.url("/events"), params={"since": nearly}, headers=alice.headers
        ) as response:
            reader = EventReader(response)
            await create(client, alice, "during")
            apply_changes(state, [(await reader.event()).change()])
            while (block := await reader.block()) is not None and block.data is None and block.id is None:
                pass  # heartbeats until the end
            assert block is not None and block.id and block.data is None  # the bare id: a fresh token
            assert await reader.block() is None  # and then the end of the stream
        await create(client, alice, "while reconnecting")
        headers = {**alice.headers, "Last-Event-ID": block.id}
        async with client.stream("GET", alice.url("/events"), headers=headers) as response:
            apply_changes(state, [(await EventReader(response).event()).change()])
        assert state == await server_state(client, alice)


async def test_a_write_through_one_process_reaches_streams_on_another(serve, alice):
    async with (
        serve() as reader_server,
        serve() as writer_server,
        http(reader_server) as reading,
        http(writer_server) as writing,
    ):
        async with reading.stream("GET", alice.url("/events"), headers=alice.headers) as response:
            events = EventReader(response)
            task = await create(writing, alice, "from the other replica")
            assert (await events.event()).change() == {"op": "upsert", "task": task}


async def test_sigterm_ends_open_streams_cleanly_before_the_graceful_timeout(serve, alice, caplog):
    caplog.set_level(logging.INFO)
    async with serve(graceful_seconds=60) as server, http(server) as client:
        async with client.stream("GET", alice.url("/events"), headers=alice.headers) as response:
            reader = EventReader(response)
            signal.raise_signal(signal.SIGTERM)  # as a process manager stops the service
            block = await reader.block(within_seconds=10)
            assert block is not None and block.id and block.data is None  # the resume token
            assert await reader.block(within_seconds=10) is None  # a clean end of the response
        await wait_until(lambda: server.server.should_exit, 5, "the server stops")
    assert "timeout graceful shutdown exceeded" not in caplog.text


async def test_head_of_the_stream_answers_its_headers_and_ends(client, alice):
    """HEAD is answered as GET without a body; a stream's body would never end, so it ends at once."""
    response = await client.head(alice.url("/events"), headers=alice.headers)
    assert response.status_code == 200 and response.content == b""
    assert response.headers["content-type"].startswith("text/event-stream")
    assert client.app.state.event_hub.open_streams == 0
