"""The "Try the model" page: its form's limits."""

import re
from unittest import mock

import pytest
from django.urls import reverse

from config.celery import app
from sampler.generation.models import GenerationJob
from sampler.generation.params import MIN_PROMPT_TOKENS

HTMX = {"HTTP_HX_REQUEST": "true"}
FIELDS = {"message": "hello?", "n": 1, "temperature": 0.8, "top_p": 1.0}


def _tokens_input_with(client, policy, settings, *, cap: int, context_length: int) -> str:
    """The token-limit input the page shows with the site's ``cap`` and an active policy of
    ``context_length`` tokens."""
    settings.GENERATION_MAX_NEW_TOKENS = cap
    policy.context_length = context_length
    policy.save(update_fields=["context_length"])
    html = client.get(reverse("sampler:generate")).content.decode()
    return re.search(r'<input[^>]*name="max_new_tokens"[^>]*>', html).group(0)


def _asked(client, max_new_tokens: int):
    with mock.patch.object(app, "send_task"):
        return client.post(
            reverse("sampler:generate"), {**FIELDS, "max_new_tokens": max_new_tokens}, **HTMX
        )


def test_the_token_limit_offered_is_what_the_active_versions_context_leaves(
    policy, trainer_client, settings
):
    """The site's cap is 256 tokens, but a 64-token context leaves a reply 48 after the
    prompt's 16: the form offers 48 at most (and starts there), and refuses more in the
    service's words, storing nothing."""
    most = 64 - MIN_PROMPT_TOKENS
    tokens = _tokens_input_with(trainer_client, policy, settings, cap=256, context_length=64)
    assert f'max="{most}"' in tokens and f'value="{most}"' in tokens

    assert f"ask for at most {most}." in _asked(trainer_client, 100).content.decode()
    assert not GenerationJob.objects.exists()
    assert _asked(trainer_client, most).status_code == 200
    assert GenerationJob.objects.get().params["max_new_tokens"] == most


@pytest.mark.parametrize(
    ("context_length", "cap", "asked", "refusal"),
    [
        # The context leaves more than the cap: the cap, in the form's words.
        (4096, 32, 33, "less than or equal to 32"),
        # No limit fits a 16-token context: the form offers the cap, and the service refuses
        # any, saying why (rather than a limit that would be refused too).
        (MIN_PROMPT_TOKENS, 256, 1, "too short for any reply"),
    ],
)
def test_the_token_limit_offered_is_the_sites_cap_where_the_context_sets_none(
    policy, trainer_client, settings, context_length, cap, asked, refusal
):
    tokens = _tokens_input_with(
        trainer_client, policy, settings, cap=cap, context_length=context_length
    )
    assert f'max="{cap}"' in tokens
    assert refusal in _asked(trainer_client, asked).content.decode()
    assert not GenerationJob.objects.exists()
