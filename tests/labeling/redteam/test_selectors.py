from labeling.redteam import services as redteam_services
from labeling.redteam.selectors import attack_success_by_model_version
from tests.labeling.conftest import model_reply


def test_success_rate_per_model_version(red_team, trainer, model_version):
    conversation, prompt, reply = red_team
    # A second model reply that resisted: one success out of two replies.
    model_reply(conversation, prompt, model_version, text="I can't help with that.")
    redteam_services.attack_record(message=reply, user=trainer, category="jailbreak")
    (row,) = attack_success_by_model_version()
    assert row["model_version__name"] == "policy-v1"
    assert (row["replies"], row["attacks"], row["success_rate"]) == (2, 1, 0.5)
