"""The app's models live in its feature packages; imported here so Django registers them under
the ``labeling`` app label (their tables keep their names)."""

from labeling.conversations.models import Conversation, Draft, Message, MessageWalk
from labeling.feedback.models import Feedback
from labeling.guidelines.models import GuidelineAcknowledgement, GuidelineVersion
from labeling.redteam.models import Attack, AttackResult, AttackRun, AttackRunAttack

__all__ = [
    "Attack",
    "AttackResult",
    "AttackRun",
    "AttackRunAttack",
    "Conversation",
    "Draft",
    "Feedback",
    "GuidelineAcknowledgement",
    "GuidelineVersion",
    "Message",
    "MessageWalk",
]
