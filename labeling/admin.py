"""The app's admin: each feature registers its models in its own ``admin`` module."""

from labeling.conversations import admin as conversations_admin
from labeling.feedback import admin as feedback_admin
from labeling.guidelines import admin as guidelines_admin
from labeling.redteam import admin as redteam_admin

__all__ = ["conversations_admin", "feedback_admin", "guidelines_admin", "redteam_admin"]
