"""The admin shows trainers' feedback and changes none of it: a thumb or a report is what the
trainer said, checked by the feedback services (known categories, a filter report naming the
result it disputes), and the exports and the overview count it."""

import pytest
from django.urls import reverse

from labeling.feedback.models import Feedback
from labeling.feedback.selectors import feedback_summaries
from tests.labeling.feedback.conftest import model_message
from tests.ranking.conftest import model_version_create

pytestmark = pytest.mark.django_db


def test_the_admin_cannot_rewrite_a_trainers_feedback(admin_client_, trainer):
    message = model_message(trainer, model_version_create("policy"))
    feedback = Feedback.objects.create(
        user=trainer, message=message, rating="up", categories=["harmful"]
    )
    change = reverse("admin:labeling_feedback_change", args=[feedback.pk])
    form = admin_client_.get(change).context["adminform"].form
    data = {name: form[name].value() for name in form.fields}
    data = {name: "" if value is None else value for name, value in data.items()}

    posted = admin_client_.post(change, data | {"categories": "5", "rating": "down"})
    feedback.refresh_from_db()

    assert (feedback.rating, feedback.categories) == ("up", ["harmful"])
    assert posted.status_code == 403
    assert feedback_summaries(messages=[(message.pk, None)])[message.pk]["up"] == 1
    assert admin_client_.get(reverse("admin:labeling_feedback_add")).status_code == 403
