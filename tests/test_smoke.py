from conftest import assert_problem, create


async def test_create_then_get(client, alice):
    task = await create(client, alice, "Write tests")
    response = await client.get(alice.url(f"/{task['id']}"), headers=alice.headers)
    assert response.status_code == 200
    assert response.json()["title"] == "Write tests"


async def test_missing_token(client, alice):
    assert_problem(await client.get(alice.url()), 401, "missing_token")
