import pytest
from playwright.sync_api import expect

from sampler.comparisons.models import SideBySide, SideBySideVote
from sampler.registry.models import ModelVersion
from tests.browser.conftest import log_in
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_trainer_compares_two_replies_and_the_vote_is_stored(page, live_server, trainer, policy):
    other = ModelVersion.objects.create(name="micro-dpo", path=policy.path, parent=policy)
    for index in range(2):
        SideBySide.objects.create(
            version_a=other,
            version_b=policy,
            prompt=[{"role": "user", "content": f"how was your day {index}?"}],
            reply_a=f"great, thanks for asking {index}!",
            reply_b=f"fine {index}",
        )
    log_in(page, live_server, "tess", PASSWORD)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Compare").click()
    expect(page.get_by_role("heading", name="Which reply is better?")).to_be_visible()
    first = page.locator('.vote-reply[data-position="first"]').inner_text()
    page.get_by_role("button", name="Reply 1 is better").click()
    expect(page.locator("#vote-card")).to_contain_text("You have compared 1 pair.")
    vote = SideBySideVote.objects.get()
    # Whichever side was shown first is the one stored as chosen.
    chosen = vote.item.reply_a if vote.choice == "a" else vote.item.reply_b
    assert chosen in first and vote.a_shown_first == (vote.choice == "a")
    page.get_by_role("button", name="About the same").click()
    expect(page.locator("#vote-empty")).to_be_visible()
    assert sorted(SideBySideVote.objects.values_list("choice", flat=True))[-1] == "tie"
