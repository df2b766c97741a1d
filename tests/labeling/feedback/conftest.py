import pytest

from labeling.conversations.models import Conversation, Message
from sampler.generation import services as sampler_services
from tests.labeling.conftest import HTMX, model_reply

PROMPT = [{"role": "user", "content": "hi! how was your weekend?"}]


@pytest.fixture
def flag_nothing(settings):
    settings.CONTENT_FILTER = "builtin"
    settings.CONTENT_FILTER_WORDS = {}
    settings.CONTENT_FILTER_PATTERNS = {}
    return settings


def sample_job(user, n=2):
    job = sampler_services.generation_job_create(
        messages=PROMPT,
        n=n,
        params={"max_new_tokens": 8},
        seed=7,
        requested_by=user,
        queue=False,
    )
    return sampler_services.generation_job_run_inline(job_id=job.pk)


def feedback_url(kind, target_id):
    return f"/write/feedback/{kind}/{target_id}/"


def post_feedback(client, kind, target_id, data):
    return client.post(feedback_url(kind, target_id), data, **HTMX)


def model_message(owner, policy) -> Message:
    """A model-written reply to a user turn in a conversation of ``owner``."""
    conversation = Conversation.objects.create(owner=owner)
    user_turn = Message.objects.create(conversation=conversation, role="user", content="hi")
    return model_reply(conversation, user_turn, policy)
