"""Authorization matrix (issue 5 §2, OWASP API1 "broken object level authorization").

Three users share one running app: alice is the attacker, bob the victim, carol a bystander
whose path alice also names. Each owns a few tasks whose title and description are unique
marker strings. Bob also has a task he deleted and two tasks he created with an
`Idempotency-Key`.

For every route and every way alice can name someone else's object there is one test (one
cell). The ways are: bob's task id under her path, her task id under bob's path, bob's path
with bob's task, carol's path with bob's task, missing and deleted ids, ids out of range, and
other spellings of an id ("007", "+7", "7.0", "0_7"). Each is sent plain, with `If-Match` set to bob's real ETag, with
`If-Match: *`, and with `Idempotency-Key` set to a key bob used. Each cell asserts:

* the exact status and problem `code`: 403 whenever the path's user is not the token's
  subject (checked before anything else), 404 for someone else's task under alice's own path,
  and 422 for an id out of range or not spelled canonically;
* a 403 is byte-for-byte the 403 for a user id that never existed. A 404 is the 404 for an id
  that never existed, with the same headers apart from the request id. So neither status tells
  alice whether the thing she named exists;
* no byte of bob's or carol's data is in the response body or headers: marker strings, user
  ids, idempotency keys, ETags, or task ids in the forms they take in their resources
  (`"id":N`, `/tasks/N`);
* after every write attempt, bob's and carol's tasks equal the snapshot taken through their
  own tokens, and so do alice's own seed tasks (a 403 or 404 touches nothing).

Positive controls (alice on her own fresh task) run through the same plumbing, so the module
would fail if the service refused everything.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import respx

from service.testing import FakeBetterAuth
from support.app import ISSUER_URL, User, assert_problem, new_user_id, running_app, test_settings

TASK_ID_MAX = 2**63 - 1
MISSING_ID = TASK_ID_MAX  # in range, and never reached by the identity sequence in a test run
SEED_TASKS = 3
LIST_ALL = {"limit": "500"}
NO_DATA_HEADERS = {"x-request-id", "date"}  # differ by design between two otherwise equal answers

PUT_BODY = {"title": "attacker put", "description": "overwritten by alice", "completed": True}
PATCH_BODY = {"title": "attacker patch"}
CREATE_BODY = {"title": "attacker create"}
# Bob's idempotent create uses a guessable body, so alice can send the very same request.
GUESSABLE_BODY = {"title": "Buy milk"}


# -- module-wide app and data ------------------------------------------------------------------


@pytest.fixture(scope="module")
def issuer() -> FakeBetterAuth:
    """Overrides conftest's issuer for the module: one key set, one app, every cell."""
    return FakeBetterAuth(ISSUER_URL)


@pytest.fixture(scope="module")
def jwks_router(issuer: FakeBetterAuth):
    with respx.mock(assert_all_called=True, assert_all_mocked=True) as router:
        issuer.mock(router)
        yield router


@pytest.fixture(scope="module")
async def client(database_url: str, issuer: FakeBetterAuth, jwks_router):
    async with running_app(test_settings(database_url, issuer)) as client:
        yield client


@dataclass
class Party:
    """A user with their seed tasks, their ETags and the strings that must never leak to others."""

    user: User
    name: str
    tasks: list[dict] = field(default_factory=list)
    etags: dict[int, str] = field(default_factory=dict)
    markers: list[str] = field(default_factory=list)
    keys: dict[str, str] = field(default_factory=dict)  # Idempotency-Keys used, by purpose
    key_tasks: dict[str, dict] = field(default_factory=dict)  # the task each key created
    deleted_id: int | None = None
    cursor: str | None = None  # from their own list's Link rel=next

    @property
    def task_ids(self) -> list[int]:
        ids = [t["id"] for t in self.tasks] + [t["id"] for t in self.key_tasks.values()]
        return ids + ([self.deleted_id] if self.deleted_id is not None else [])

    @property
    def first(self) -> dict:
        return self.tasks[0]


@dataclass
class World:
    client: httpx.AsyncClient
    attacker: Party
    victim: Party
    bystander: Party
    attacker_seed: list[dict]  # alice's own seed tasks as created (cells must not touch them either)
    snapshots: dict[str, list[dict]]  # user id -> their full list, through their own token
    leak_patterns: list[tuple[str, re.Pattern[bytes]]]  # (what, pattern) over body and headers

    def party(self, role: str) -> Party:
        return {"attacker": self.attacker, "victim": self.victim, "bystander": self.bystander}[role]


async def list_all(client: httpx.AsyncClient, user: User) -> list[dict]:
    response = await client.get(user.url(), params=LIST_ALL, headers=user.headers)
    assert response.status_code == 200, response.text
    return sorted(response.json(), key=lambda t: t["id"])


async def seed(client: httpx.AsyncClient, party: Party) -> None:
    for index in range(SEED_TASKS):
        title = f"{party.name}-title-{secrets.token_hex(8)}"
        description = f"{party.name}-description-{secrets.token_hex(8)}"
        party.markers += [title, description]
        response = await client.post(party.user.url(), json={"title": title, "description": description},
                                     headers=party.user.headers)  # fmt: skip
        assert response.status_code == 201, response.text
        task = response.json()
        if index == 1:  # one completed task: version 2, a different ETag shape
            response = await client.patch(party.user.url(f"/{task['id']}/complete"), headers=party.user.headers)
            assert response.status_code == 200, response.text
            task = response.json()
        party.tasks.append(task)
    for task in party.tasks:
        response = await client.get(party.user.url(f"/{task['id']}"), headers=party.user.headers)
        party.etags[task["id"]] = response.headers["etag"]


async def build_world(client: httpx.AsyncClient, issuer: FakeBetterAuth) -> World:
    def party(name: str) -> Party:
        user_id = new_user_id()
        return Party(User(user_id, issuer.issue_token(user_id)), name)

    alice, bob, carol = party("alice"), party("bob"), party("carol")
    for p in (alice, bob, carol):
        await seed(client, p)

    # Bob's idempotent creates: one key alice will replay with his (guessable) body, one with hers.
    for purpose in ("same-body", "other-body"):
        key = f"bob-{purpose}-{secrets.token_hex(8)}"
        bob.keys[purpose] = key
        response = await client.post(
            bob.user.url(), json=GUESSABLE_BODY, headers={**bob.user.headers, "Idempotency-Key": key}
        )
        assert response.status_code == 201, response.text
        bob.key_tasks[purpose] = response.json()
        bob.etags[response.json()["id"]] = response.headers["etag"]

    # A task Bob deleted: its id existed once.
    response = await client.post(
        bob.user.url(), json={"title": f"bob-deleted-{secrets.token_hex(8)}"}, headers=bob.user.headers
    )
    bob.markers.append(response.json()["title"])
    bob.deleted_id = response.json()["id"]
    assert (await client.delete(bob.user.url(f"/{bob.deleted_id}"), headers=bob.user.headers)).status_code == 204

    # A cursor from Bob's own list (it names his last row's created_at and id).
    response = await client.get(bob.user.url(), params={"limit": "1"}, headers=bob.user.headers)
    bob.cursor = re.search(r"cursor=([A-Za-z0-9_-]+)", response.headers["link"]).group(1)

    snapshots = {p.user.id: await list_all(client, p.user) for p in (alice, bob, carol)}
    return World(
        client=client,
        attacker=alice,
        victim=bob,
        bystander=carol,
        attacker_seed=list(snapshots[alice.user.id]),
        snapshots=snapshots,
        leak_patterns=leak_patterns([bob, carol]),
    )


def leak_patterns(others: list[Party]) -> list[tuple[str, re.Pattern[bytes]]]:
    """What of `others` must never reach alice, as byte patterns over body and header lines."""
    patterns: list[tuple[str, re.Pattern[bytes]]] = []
    for p in others:
        literals = [p.user.id, *p.markers, *p.keys.values(), *p.etags.values()]
        for text in literals:
            patterns.append((f"{p.name}: {text!r}", re.compile(re.escape(text.encode()))))
            encoded = quote(text, safe="")
            if encoded != text:
                patterns.append((f"{p.name}: {encoded!r}", re.compile(re.escape(encoded.encode()))))
        for task_id in p.task_ids:
            # The forms an id takes in a resource: the JSON member, the Location path, the ETag.
            patterns.append(
                (f"{p.name}: task {task_id}", re.compile(rb'"id":\s*%d(?!\d)|/tasks/%d(?!\d)' % (task_id, task_id)))
            )
    return patterns


@pytest.fixture(scope="module")
async def world(client: httpx.AsyncClient, issuer: FakeBetterAuth) -> World:
    return await build_world(client, issuer)


# -- the table ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    name: str
    method: str
    suffix: str | None  # None: the collection (/tasks); else appended after /tasks/{id}
    body: dict | None
    success: int
    writes: bool


ROUTES = {
    "list": Route("list", "GET", None, None, 200, False),
    "create": Route("create", "POST", None, CREATE_BODY, 201, True),
    "get": Route("get", "GET", "", None, 200, False),
    "put": Route("put", "PUT", "", PUT_BODY, 200, True),
    "patch": Route("patch", "PATCH", "", PATCH_BODY, 200, True),
    "complete": Route("complete", "PATCH", "/complete", None, 200, True),
    "delete": Route("delete", "DELETE", "", None, 204, True),
}
ID_ROUTES = ["get", "put", "patch", "complete", "delete"]


@dataclass(frozen=True)
class Naming:
    """How a cell names the object: whose path, which task id (as text), and the outcome."""

    name: str
    path_owner: str  # attacker / victim / bystander
    task: Callable[[World], str] | None  # None for the collection routes
    status: int
    code: str
    path_user_raw: Callable[[World], str] | None = None  # the path segment as sent (encodings)
    query: Callable[[World], dict[str, str]] | None = None


# Spellings of an id number that a lax integer parser (pydantic's default) would accept.
SPELLINGS = {
    "zero-padded": "000{}",
    "plus-sign": "+{}",
    "dot-zero": "{}.0",
    "leading-space": "%20{}",
    "underscore": "0_{}",
}


def victim_task(w: World) -> str:
    return str(w.victim.first["id"])


ID_NAMINGS = [
    Naming("their-task-my-path", "attacker", victim_task, 404, "task_not_found"),
    Naming("their-completed-task-my-path", "attacker", lambda w: str(w.victim.tasks[1]["id"]), 404, "task_not_found"),
    Naming(
        "their-idempotent-task-my-path",
        "attacker",
        lambda w: str(w.victim.key_tasks["same-body"]["id"]),
        404,
        "task_not_found",
    ),
    # Other spellings of bob's task id: one task has one URL, so these are invalid ids.
    *(
        Naming(
            f"id-spelled-{label}-their-task-my-path",
            "attacker",
            (lambda f: lambda w: f.format(w.victim.first["id"]))(form),
            422,
            "validation_failed",
        )
        for label, form in SPELLINGS.items()
    ),
    Naming("third-party-task-my-path", "attacker", lambda w: str(w.bystander.first["id"]), 404, "task_not_found"),
    Naming("my-task-their-path", "victim", lambda w: str(w.attacker.first["id"]), 403, "forbidden"),
    Naming("their-task-their-path", "victim", victim_task, 403, "forbidden"),
    Naming("their-task-third-party-path", "bystander", victim_task, 403, "forbidden"),
    Naming(
        "their-task-their-path-encoded",
        "victim",
        victim_task,
        403,
        "forbidden",
        path_user_raw=lambda w: "".join(f"%{b:02X}" for b in w.victim.user.id.encode()),
    ),
    Naming("missing-my-path", "attacker", lambda w: str(MISSING_ID), 404, "task_not_found"),
    Naming("deleted-my-path", "attacker", lambda w: str(w.victim.deleted_id), 404, "task_not_found"),
    Naming("missing-their-path", "victim", lambda w: str(MISSING_ID), 403, "forbidden"),
    Naming("id-zero-my-path", "attacker", lambda w: "0", 422, "validation_failed"),
    Naming("id-negative-my-path", "attacker", lambda w: "-1", 422, "validation_failed"),
    Naming("id-2^63-my-path", "attacker", lambda w: str(2**63), 422, "validation_failed"),
    Naming("id-huge-my-path", "attacker", lambda w: "9" * 40, 422, "validation_failed"),
    Naming("id-text-my-path", "attacker", lambda w: "abc", 422, "validation_failed"),
    Naming("id-fraction-my-path", "attacker", lambda w: f"{w.victim.first['id']}.5", 422, "validation_failed"),
    Naming(
        "id-negative-their-task-my-path", "attacker", lambda w: f"-{w.victim.first['id']}", 422, "validation_failed"
    ),
    Naming("id-text-their-path", "victim", lambda w: "abc", 403, "forbidden"),
    Naming("id-2^63-their-path", "victim", lambda w: str(2**63), 403, "forbidden"),
]

LIST_NAMINGS = [
    Naming("their-path", "victim", None, 403, "forbidden"),
    Naming("third-party-path", "bystander", None, 403, "forbidden"),
    Naming(
        "their-path-encoded",
        "victim",
        None,
        403,
        "forbidden",
        path_user_raw=lambda w: "".join(f"%{b:02X}" for b in w.victim.user.id.encode()),
    ),
    Naming(
        "their-path-search-their-marker", "victim", None, 403, "forbidden", query=lambda w: {"q": w.victim.markers[0]}
    ),
    Naming("my-path-search-their-marker", "attacker", None, 200, "", query=lambda w: {"q": w.victim.markers[0]}),
    Naming("my-path-search-their-user-id", "attacker", None, 200, "", query=lambda w: {"q": w.victim.user.id}),
    Naming(
        "my-path-their-cursor", "attacker", None, 200, "", query=lambda w: {"limit": "1", "cursor": w.victim.cursor}
    ),
    Naming("my-path", "attacker", None, 200, "", query=lambda w: LIST_ALL),
    # Control for the encoded cells above: the server decodes the segment before comparing.
    Naming(
        "my-path-encoded",
        "attacker",
        None,
        200,
        "",
        query=lambda w: LIST_ALL,
        path_user_raw=lambda w: "".join(f"%{b:02X}" for b in w.attacker.user.id.encode()),
    ),
]

CREATE_NAMINGS = [
    Naming("their-path", "victim", None, 403, "forbidden"),
    Naming("third-party-path", "bystander", None, 403, "forbidden"),
    Naming(
        "their-path-encoded",
        "victim",
        None,
        403,
        "forbidden",
        path_user_raw=lambda w: "".join(f"%{b:02X}" for b in w.victim.user.id.encode()),
    ),
    Naming("my-path", "attacker", None, 201, ""),
]


@dataclass(frozen=True)
class Variant:
    """Extra request headers built from the victim's real values."""

    name: str
    headers: Callable[[World, str | None], dict[str, str]]  # (world, task id text) -> headers
    body: dict | None = None  # replaces the route's body


def their_etag(w: World, task_id: str | None) -> str:
    """Bob's real current ETag for the task the cell names, else for his first task."""
    for t in w.victim.tasks + list(w.victim.key_tasks.values()):
        if task_id is not None and re.sub(r"^(000|\+|%20|0_)|\.0$", "", task_id) == str(t["id"]):
            return w.victim.etags[t["id"]]
    return w.victim.etags[w.victim.first["id"]]


ID_VARIANTS = [
    Variant("plain", lambda w, t: {}),
    Variant("if-match-their-etag", lambda w, t: {"If-Match": their_etag(w, t)}),
    Variant("if-match-any", lambda w, t: {"If-Match": "*"}),
    Variant("their-idempotency-key", lambda w, t: {"Idempotency-Key": w.victim.keys["same-body"]}),
]
CREATE_VARIANTS = [
    Variant("plain", lambda w, t: {}),
    Variant(
        "their-idempotency-key-their-body", lambda w, t: {"Idempotency-Key": w.victim.keys["same-body"]}, GUESSABLE_BODY
    ),
    Variant(
        "their-idempotency-key-other-body", lambda w, t: {"Idempotency-Key": w.victim.keys["other-body"]}, CREATE_BODY
    ),
]


@dataclass(frozen=True)
class Cell:
    route: Route
    naming: Naming
    variant: Variant
    control: bool = False  # alice on a fresh task of her own: the request must succeed

    @property
    def status(self) -> int:
        if not self.control:
            return self.naming.status
        if self.variant.name == "if-match-their-etag" and self.route.method != "GET":
            return 412  # bob's ETag names another task: it never matches hers
        return self.route.success


def cells() -> list[Any]:
    params = []
    for route_name in ID_ROUTES:
        for naming in ID_NAMINGS:
            for variant in ID_VARIANTS:
                suffix = "" if variant.name == "plain" else f"/{variant.name}"
                params.append(
                    pytest.param(Cell(ROUTES[route_name], naming, variant), id=f"{route_name}/{naming.name}{suffix}")
                )
    for naming in LIST_NAMINGS:
        params.append(pytest.param(Cell(ROUTES["list"], naming, ID_VARIANTS[0]), id=f"list/{naming.name}"))
    for naming in CREATE_NAMINGS:
        for variant in CREATE_VARIANTS:
            suffix = "" if variant.name == "plain" else f"/{variant.name}"
            params.append(pytest.param(Cell(ROUTES["create"], naming, variant), id=f"create/{naming.name}{suffix}"))
    return params


def control_cells() -> list[Any]:
    own = Naming("my-fresh-task-my-path", "attacker", None, 0, "")
    return [
        pytest.param(Cell(ROUTES[route_name], own, variant, control=True), id=f"{route_name}/{own.name}/{variant.name}")
        for route_name in ID_ROUTES
        for variant in ID_VARIANTS
    ]


# -- sending and checking ----------------------------------------------------------------------


def path_for(w: World, cell: Cell, owner_segment: str, task_id: str | None) -> str:
    base = f"/api/{owner_segment}/tasks"
    if cell.route.suffix is None:
        return base
    return f"{base}/{task_id}{cell.route.suffix}"


def owner_segment(w: World, naming: Naming) -> str:
    if naming.path_user_raw is not None:
        return naming.path_user_raw(w)
    return quote(w.party(naming.path_owner).user.id, safe="")


async def send(w: World, cell: Cell, segment: str, task_id: str | None) -> httpx.Response:
    alice = w.attacker.user
    headers = {**alice.headers, **cell.variant.headers(w, task_id)}
    body = cell.variant.body if cell.variant.body is not None else cell.route.body
    params = cell.naming.query(w) if cell.naming.query else None
    # The path is passed as a raw target, so percent-encodings reach the server as written.
    url = (
        httpx.URL(path_for(w, cell, segment, task_id), params=params) if params else path_for(w, cell, segment, task_id)
    )
    return await w.client.request(cell.route.method, url, json=body, headers=headers)


def assert_no_leak(w: World, response: httpx.Response) -> None:
    header_bytes = b"\r\n".join(name + b": " + value for name, value in response.headers.raw)
    for where, data in (("body", response.content), ("headers", header_bytes)):
        for what, pattern in w.leak_patterns:
            match = pattern.search(data)
            assert match is None, (
                f"{what} leaked in the {where}: …{data[max(0, match.start() - 60) : match.end() + 60]!r}…"
            )


def comparable(response: httpx.Response) -> tuple[int, bytes, dict[str, str]]:
    return (
        response.status_code,
        response.content,
        {k: v for k, v in response.headers.items() if k not in NO_DATA_HEADERS},
    )


async def assert_untouched(w: World) -> None:
    """Bob's and Carol's tasks as their own tokens see them, and Alice's seed tasks, unchanged."""
    for party in (w.victim, w.bystander):
        assert await list_all(w.client, party.user) == w.snapshots[party.user.id], f"{party.name}'s tasks changed"
    mine = {t["id"]: t for t in await list_all(w.client, w.attacker.user)}
    assert [mine.get(t["id"]) for t in w.attacker_seed] == w.attacker_seed, "alice's seed tasks changed"


async def assert_their_keys_still_replay_their_tasks(w: World) -> None:
    bob = w.victim.user
    for purpose, key in w.victim.keys.items():
        response = await w.client.post(bob.url(), json=GUESSABLE_BODY, headers={**bob.headers, "Idempotency-Key": key})
        assert response.status_code == 201 and response.headers.get("idempotent-replayed") == "true", response.text
        assert response.json() == w.victim.key_tasks[purpose]


@pytest.mark.parametrize("cell", cells())
async def test_cross_user_access_is_refused_without_leaking(world: World, cell: Cell):
    w = world
    task_id = cell.naming.task(w) if cell.naming.task else None
    segment = owner_segment(w, cell.naming)
    response = await send(w, cell, segment, task_id)

    if cell.naming.status >= 400:
        problem = assert_problem(response, cell.naming.status, cell.naming.code)
        if cell.naming.status == 422:
            assert [e["field"] for e in problem["errors"]] == ["task_id"], problem
        if cell.naming.status == 403:
            # The same answer as for a user id nobody has: no oracle for which users exist.
            stranger = await send(w, cell, quote(new_user_id(), safe=""), task_id)
            assert comparable(response) == comparable(stranger)
        if cell.naming.status == 404:
            # The same answer as for an id that never existed: no oracle for which ids exist.
            missing = await send(w, cell, segment, str(MISSING_ID))
            assert comparable(response) == comparable(missing)
    else:
        assert response.status_code == cell.naming.status, response.text
        if cell.route.name == "list":
            listed = response.json()
            assert all(t["user_id"] == w.attacker.user.id for t in listed), listed
            if cell.naming.name.startswith("my-path-search"):
                assert listed == []
        if cell.route.name == "create":
            created = response.json()
            assert created["user_id"] == w.attacker.user.id and "idempotent-replayed" not in response.headers
            assert response.headers["location"] == f"/api/{w.attacker.user.id}/tasks/{created['id']}"

    assert_no_leak(w, response)
    if cell.route.writes:
        await assert_untouched(w)
    if cell.route.name == "create" and "idempotency-key" in cell.variant.name:
        await assert_their_keys_still_replay_their_tasks(w)


@pytest.mark.parametrize("cell", control_cells())
async def test_own_task_under_own_path_is_served(world: World, cell: Cell):
    """Positive control through the same request builder: alice on a fresh task of her own."""
    w = world
    alice = w.attacker.user
    response = await w.client.post(alice.url(), json={"title": "alice control"}, headers=alice.headers)
    assert response.status_code == 201, response.text
    own = response.json()
    response = await send(w, cell, quote(alice.id, safe=""), str(own["id"]))
    assert response.status_code == cell.status, response.text
    if cell.status == 412:
        assert_problem(response, 412, "precondition_failed")
    assert_no_leak(w, response)
    if cell.route.writes:
        await assert_untouched(w)


async def test_the_leak_check_sees_their_data_in_their_own_answers(world: World):
    """The detector itself: Bob's own answers (body, ETag, Location) must trip it."""
    bob = world.victim.user
    answers = [
        await world.client.get(bob.url(), params=LIST_ALL, headers=bob.headers),
        await world.client.get(bob.url(f"/{world.victim.first['id']}"), headers=bob.headers),
        await world.client.post(
            bob.url(), json=GUESSABLE_BODY, headers={**bob.headers, "Idempotency-Key": world.victim.keys["same-body"]}
        ),
    ]
    for response in answers:
        assert response.status_code in (200, 201), response.text
        with pytest.raises(AssertionError, match="leaked"):
            assert_no_leak(world, response)
    etag_only = httpx.Response(204, headers={"ETag": world.victim.etags[world.victim.first["id"]]})
    with pytest.raises(AssertionError, match="leaked in the headers"):
        assert_no_leak(world, etag_only)
    location_only = httpx.Response(204, headers={"Location": f"/api/x/tasks/{world.victim.deleted_id}"})
    with pytest.raises(AssertionError, match="leaked in the headers"):
        assert_no_leak(world, location_only)


def test_the_matrix_covers_every_route_and_naming_with_unique_ids():
    ids = [p.id for p in cells()] + [p.id for p in control_cells()]
    assert len(ids) == len(set(ids))
    assert {p.values[0].route.name for p in cells()} == set(ROUTES)
    for route_name in ID_ROUTES:
        assert {p.values[0].naming.name for p in cells() if p.values[0].route.name == route_name} == {
            n.name for n in ID_NAMINGS
        }


@pytest.mark.parametrize("label", list(SPELLINGS))
async def test_non_canonical_spellings_of_my_own_task_id_are_refused(world: World, label: str):
    """README: ids are positive 64-bit integers, and one task has one URL (caches, WAF rules and
    logs key on it). Before the canonical-id check, each of these spellings served the task."""
    alice = world.attacker.user
    own = world.attacker.first["id"]
    response = await world.client.get(alice.url("/" + SPELLINGS[label].format(own)), headers=alice.headers)
    problem = assert_problem(response, 422, "validation_failed")
    assert [e["field"] for e in problem["errors"]] == ["task_id"]
