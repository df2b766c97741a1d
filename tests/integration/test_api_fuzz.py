"""Schemathesis against the app's own OpenAPI schema, on PostgreSQL: generated requests (valid
and invalid) to every operation, as a trainer and as staff. Every answer must be a non-5xx whose
status code, content type and body the schema documents.

Bounded so the tier stays small: a fixed number of examples per operation, derandomized (the
same requests every run), and generation requests kept tiny (n <= 2, a few tokens; no worker
runs them: they wait in this run's Redis).
"""

from collections import Counter

import pytest
import schemathesis
from django.conf import settings as django_settings
from django.core.wsgi import get_wsgi_application
from django.test import Client
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from labeling.conversations import services as conversation_services

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

EXAMPLES_PER_OPERATION = 25
CSRF_TOKEN = "f" * 32
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def _session(user) -> dict[str, dict[str, str]]:
    """A logged-in browser session, with the CSRF cookie and header a page's script sends."""
    client = Client()
    client.force_login(user)
    return {
        "cookies": {
            django_settings.SESSION_COOKIE_NAME: client.cookies[
                django_settings.SESSION_COOKIE_NAME
            ].value,
            django_settings.CSRF_COOKIE_NAME: CSRF_TOKEN,
        },
        "headers": {"X-CSRFToken": CSRF_TOKEN},
    }


def _fuzz(
    session: dict[str, dict[str, str]], *, paths: tuple[str, ...] | None = None
) -> tuple[list[str], Counter]:
    """Run every operation (under ``paths`` when given); the failures, one line each, and how
    many answers of each status class (2xx, 4xx, ...) came back."""
    raw = SchemaGenerator().get_schema(request=None, public=True)
    # The session is given below; without this schemathesis would also send made-up Basic
    # credentials, and most requests would stop at authentication.
    raw["components"].pop("securitySchemes", None)
    for methods in raw["paths"].values():
        for operation in methods.values():
            operation.pop("security", None)
    schema = schemathesis.openapi.from_dict(raw)
    schema.app = get_wsgi_application()
    failures, operations, answers = [], 0, Counter()
    for result in schema.get_all_operations():
        operation = result.ok()
        if paths is not None and not operation.path.startswith(paths):
            continue
        operations += 1

        @given(case=operation.as_strategy())
        @hypothesis_settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def run(case):
            response = case.call_and_validate(checks=CHECKS, **session)
            answers[f"{response.status_code // 100}xx"] += 1
            answers[response.status_code] += 1

        try:
            run()
        except (Exception, BaseExceptionGroup) as error:  # every operation is tried
            failures.append(f"{operation.method.upper()} {operation.path}: {error}"[:2000])
    assert operations > 0
    return failures, answers


@pytest.fixture
def tiny_generation(settings):
    settings.GENERATION_MAX_N = 2
    settings.GENERATION_MAX_NEW_TOKENS = 4


def test_the_api_answers_generated_requests_as_documented_for_a_trainer(
    trainer, other_trainer, policy, tiny_generation
):
    # Rows for the generated ids to find: the trainer's own and someone else's.
    for owner in (trainer, other_trainer):
        conversation = conversation_services.conversation_create(owner=owner, title="Seed")
        conversation_services.message_append(conversation=conversation, author=owner, content="Hi")
    failures, answers = _fuzz(_session(trainer))
    assert failures == []
    # The requests got past authentication and CSRF and reached the views' own validation.
    assert answers["2xx"] > 20 and answers["4xx"] > 100
    assert answers[403] < answers["4xx"] / 2, answers


def test_the_staff_endpoints_answer_generated_requests_as_documented(
    admin_user, policy, tiny_generation
):
    failures, answers = _fuzz(_session(admin_user), paths=("/api/jobs/", "/api/exports/"))
    assert failures == []
    assert answers["2xx"] > 5 and answers[403] == 0, answers
