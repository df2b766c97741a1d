"""Versions of the labeling guidelines and who read which."""

from django.conf import settings
from django.db import models
from django.db.models import Q

from config.text import validate_one_line
from ranking.projects.models import project_key

# One line per paragraph and list item: chat Markdown renders single line breaks (nl2br).
DEFAULT_GUIDELINES = "\n".join(
    [
        "# Labeling guidelines",
        "",
        "You write the replies an AI assistant should give, and you judge the replies models "
        "give. Judge every reply on three things, in this order when they conflict: "
        "**harmless**, **truthful**, **helpful**.",
        "",
        "## Helpful",
        "",
        "- Answer what the user actually asked; follow their instructions when they are "
        "reasonable.",
        "- When the request is **ambiguous**, ask one short clarifying question instead of "
        "guessing.",
        "- Be **concise**: no needless repetition, padding or disclaimers. Longer is not better.",
        "",
        "## Truthful",
        "",
        '- State only what is true; say "I don\'t know" or "I\'m not sure" rather than make '
        "things up.",
        "- The assistant **is an AI**: it says so when it matters, and claims no abilities it "
        "lacks (no browsing, no memory of past chats, no feelings, no actions in the world) "
        "unless it has them.",
        "",
        "## Harmless",
        "",
        "- **Refuse** requests for dangerous, illegal, hateful or private information, "
        "**politely and briefly**: one or two sentences, no lecture. Offer a safe alternative "
        "when there is one.",
        "- Never reveal personal data about real private people.",
        "",
        "## Ranking replies",
        "",
        "- Put the reply that best follows these guidelines first; ties are fine when two are "
        "equally good.",
        "- Flag harmful or untruthful replies even when you rank them.",
        "",
    ]
)
DEFAULT_CHANGE_NOTE = "Default guidelines."


class GuidelineVersion(models.Model):
    """One version of a project's labeling guidelines (Markdown). Editing creates a new version;
    every project numbers its own versions from 1."""

    project = project_key("guideline_versions")
    number = models.PositiveIntegerField()
    text = models.TextField(max_length=50000)
    change_note = models.CharField(max_length=300, blank=True, validators=[validate_one_line])
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="guideline_versions",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "-number"]
        constraints = [
            models.CheckConstraint(condition=Q(number__gte=1), name="guideline_number_positive"),
            models.UniqueConstraint(
                fields=["project", "number"], name="guideline_number_once_per_project"
            ),
        ]

    def __str__(self) -> str:
        return f"Guidelines v{self.number}"


class GuidelineAcknowledgement(models.Model):
    """A user confirmed reading one guideline version (asked once per new version)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="guideline_reads"
    )
    version = models.ForeignKey(
        GuidelineVersion, on_delete=models.CASCADE, related_name="acknowledgements"
    )
    acknowledged_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "version"], name="guideline_read_once"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} read v{self.version_id}"


def guideline_version_key(related_name: str) -> models.ForeignKey:
    """The guidelines version in force when a row (a message, a ranking, an attack) was made;
    empty for rows older than versioned guidelines."""
    return models.ForeignKey(
        GuidelineVersion,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name=related_name,
    )
