"""Fake Google Places Text Search (New) over real HTTP: field mask, paging, 60 cap, errors."""

from __future__ import annotations

import httpx

from tests.conftest import Sandbox

MASK = ("places.id,places.displayName,places.formattedAddress,places.nationalPhoneNumber,"
        "places.internationalPhoneNumber,places.websiteUri,nextPageToken")
HEADERS = {"X-Goog-Api-Key": "sandbox-google-key", "X-Goog-FieldMask": MASK}


def _search(sandbox: Sandbox, body: dict, headers: dict | None = None  # type: ignore[type-arg]
            ) -> httpx.Response:
    return httpx.post(f"{sandbox.api('google_places')}/places:searchText", json=body,
                      headers=HEADERS if headers is None else headers, timeout=10)


def test_text_search_returns_only_masked_fields_and_pages_to_at_most_60(
        sandbox_clean: Sandbox) -> None:
    body = {"textQuery": "salons in Texas", "pageSize": 50}
    seen: list[str] = []
    pages = 0
    while True:
        r = _search(sandbox_clean, body)
        assert r.status_code == 200
        data = r.json()
        assert len(data["places"]) <= 20
        for p in data["places"]:
            assert set(p) <= {"id", "displayName", "formattedAddress", "nationalPhoneNumber",
                              "internationalPhoneNumber", "websiteUri"}
            assert ", TX " in p["formattedAddress"]
            seen.append(p["id"])
        pages += 1
        if not data.get("nextPageToken"):
            break
        body = {**body, "pageToken": data["nextPageToken"]}
    assert pages == 3 and len(seen) == 60 == len(set(seen))


def test_masks_without_next_page_token_get_no_token_and_empty_results_are_empty_objects(
        sandbox_clean: Sandbox) -> None:
    r = _search(sandbox_clean, {"textQuery": "salon in Austin, TX"},
                headers={**HEADERS, "X-Goog-FieldMask": "places.id"})
    assert "nextPageToken" not in r.json() and set(r.json()["places"][0]) == {"id"}
    r = _search(sandbox_clean, {"textQuery": "plumbers in Paris"})
    assert r.status_code == 200 and r.json() == {}


def test_changed_params_with_a_page_token_are_invalid(sandbox_clean: Sandbox) -> None:
    token = _search(sandbox_clean, {"textQuery": "salon in California"}).json()["nextPageToken"]
    r = _search(sandbox_clean, {"textQuery": "yoga in California", "pageToken": token})
    assert r.status_code == 400 and r.json()["error"]["status"] == "INVALID_ARGUMENT"


def test_auth_and_field_mask_errors_follow_google_shapes(sandbox_clean: Sandbox) -> None:
    r = _search(sandbox_clean, {"textQuery": "salon"},
                headers={"X-Goog-Api-Key": "k"})
    assert r.status_code == 400 and r.json()["error"]["message"].startswith(
        "FieldMask is a required parameter")
    r = _search(sandbox_clean, {"textQuery": "salon"},
                headers={"X-Goog-Api-Key": "invalid-1", "X-Goog-FieldMask": "*"})
    assert r.status_code == 400
    assert r.json()["error"]["details"][0]["reason"] == "API_KEY_INVALID"
    r = _search(sandbox_clean, {"textQuery": "salon"}, headers={"X-Goog-FieldMask": "*"})
    assert r.status_code == 403 and r.json()["error"]["status"] == "PERMISSION_DENIED"
