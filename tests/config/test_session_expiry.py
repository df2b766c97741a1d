"""htmx requests meeting an expired session get a 401 the page can handle, not the login page."""

from django.test import Client


def test_an_htmx_request_without_a_session_gets_401_with_the_login_url_and_next(db):
    response = Client().post(
        "/write/1/draft/",
        {"content": "half a sentence"},
        HTTP_HX_REQUEST="true",
        HTTP_HX_CURRENT_URL="http://testserver/write/1/?tab=edit",
    )

    assert response.status_code == 401
    assert response["X-Login-Url"] == "/accounts/login/?next=%2Fwrite%2F1%2F%3Ftab%3Dedit"
    assert b"<html" not in response.content


def test_a_foreign_current_url_is_not_used_as_next(db):
    response = Client().get(
        "/rank/", HTTP_HX_REQUEST="true", HTTP_HX_CURRENT_URL="https://evil.example/steal"
    )

    assert response.status_code == 401
    assert response["X-Login-Url"] == "/accounts/login/?next=%2F"


def test_a_plain_request_is_still_redirected_to_log_in(db):
    response = Client().get("/rank/")

    assert response.status_code == 302 and response.url.startswith("/accounts/login/?next=")


def test_an_htmx_request_with_a_stale_csrf_token_gets_403_saying_to_reload(trainer):
    client = Client(enforce_csrf_checks=True)
    client.force_login(trainer)
    response = client.post(
        "/write/1/draft/", {"content": "half a sentence"}, HTTP_HX_REQUEST="true"
    )

    assert response.status_code == 403
    assert response["Tandem-CSRF-Failed"] == "true"
    assert b"reload" in response.content and b"<html" not in response.content
