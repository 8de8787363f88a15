"""The console's front-end files, its security headers, and GET /api/site."""

from __future__ import annotations

import httpx

from edge.console.app import STATIC_DIR
from edge.console.headers import CSP, DOCS_CSP
from edge.gateway import Gateway
from edge.model import DoorMode


async def test_the_front_end_is_served_at_the_root(anon: httpx.AsyncClient) -> None:
    response = await anon.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.text == (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    assert response.headers["content-security-policy"] == CSP
    assert "frame-ancestors 'none'" in CSP and "img-src 'self' data:" in CSP
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"


async def test_api_responses_are_not_cached_and_carry_the_headers(guard: httpx.AsyncClient) -> None:
    response = await guard.get("/api/site")
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-security-policy"] == CSP
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_refusals_are_not_cached_either(anon: httpx.AsyncClient) -> None:
    refused = await anon.get("/api/site")
    assert refused.status_code == 401 and refused.headers["cache-control"] == "no-store"


async def test_an_unknown_api_path_is_a_json_404(guard: httpx.AsyncClient, anon: httpx.AsyncClient) -> None:
    for client in (guard, anon):
        response = await client.get("/api/no-such-thing")
        assert response.status_code == 404
        assert response.json() == {"detail": "no endpoint GET /api/no-such-thing"}


async def test_a_missing_static_file_is_404(anon: httpx.AsyncClient) -> None:
    assert (await anon.get("/no-such-file.js")).status_code == 404


async def test_site_names_the_gateway_and_its_mode(
    guard: httpx.AsyncClient, admin: httpx.AsyncClient, gateway: Gateway
) -> None:
    site = (await guard.get("/api/site")).json()
    assert site["site_id"] == gateway.config.site.id and site["site_name"] == gateway.config.site.name
    assert site["gateway_id"] == gateway.config.gateway.id
    assert site["version"] and site["language_default"] == "zh-CN"
    assert site["mode"] == "normal" and site["lockdown"] is False
    await admin.post("/api/site/lockdown", json={"reason": "drill"})
    site = (await guard.get("/api/site")).json()
    assert site["mode"] == "lockdown" and site["lockdown"] is True
    await admin.post("/api/site/normal", json={"reason": "drill over"})
    door = next(iter(gateway.site.doors))
    gateway.set_mode(DoorMode.UNLOCKED, door, by="test")
    mixed = (await guard.get("/api/site")).json()["mode"]
    assert isinstance(mixed, list) and set(mixed) == {"normal", "unlocked"}


async def test_site_needs_a_login(anon: httpx.AsyncClient) -> None:
    response = await anon.get("/api/site")
    assert response.status_code == 401
    assert response.json() == {"detail": "not logged in"}


async def test_every_api_endpoint_but_setup_and_login_needs_a_session(anon: httpx.AsyncClient) -> None:
    # Taken from the OpenAPI schema, so an endpoint added later is covered without being listed here.
    paths = (await anon.get("/openapi.json")).json()["paths"]
    checked = 0
    for path, operations in paths.items():
        if path in ("/api/setup", "/api/login"):
            continue
        url = path.replace("{door_id}", "main-gate").replace("{alarm_id}", "1").replace("{seq}", "1")
        for method in operations:
            response = await anon.request(method.upper(), url, json={} if method == "post" else None)
            assert response.status_code == 401, (method, path, response.text)
            assert response.json() == {"detail": "not logged in"}
            checked += 1
    assert checked >= 18  # the walk found them all (an endpoint added later is checked as well)


async def test_the_api_pages_get_their_own_policy_and_the_schema_is_public(anon: httpx.AsyncClient) -> None:
    docs = await anon.get("/docs")
    assert docs.status_code == 200
    assert docs.headers["content-security-policy"] == DOCS_CSP  # Swagger UI's CDN and its inline bootstrap
    assert "frame-ancestors 'none'" in DOCS_CSP
    schema = await anon.get("/openapi.json")
    assert schema.status_code == 200 and schema.headers["content-security-policy"] == CSP
