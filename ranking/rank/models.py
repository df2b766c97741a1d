from django.conf import settings
from django.db import models
from django.db.models import Q

from labeling.conversations.models import conversation_finished
from labeling.guidelines.models import guideline_version_key
from ranking.projects.models import project_key


def source_finished(path: str = "") -> Q:
    """Tasks whose conversation is finished (``path``: the lookup from the rows filtered to
    their task, such as "task__"). Only those are offered, take rankings, are exported and
    count in a project's progress (its rankings and tasks); this lives beside the tables so
    that the projects' reads use it as the ranking app's do (which read the projects'). A
    conversation reopened (in progress again) or discarded is no source of ranking tasks, so
    its tasks (gold copies included) are left as they are and come back when it is finished
    again. Their turns never change (an edit is a new branch), so they are the same tasks."""
    return conversation_finished(f"{path}source_message__")


class RankingTask(models.Model):
    """A conversation prefix ending in a user turn plus K+1 candidate assistant replies."""

    class Status(models.TextChoices):
        PREPARING = "preparing", "Sampling alternatives"
        READY = "ready", "Ready for ranking"
        COMPLETE = "complete", "Has all its rankings"
        FAILED = "failed", "Sampling failed"

    source_message = models.ForeignKey(
        "labeling.Message", on_delete=models.PROTECT, related_name="ranking_tasks_as_source"
    )
    prefix_message = models.ForeignKey(
        "labeling.Message",
        on_delete=models.PROTECT,
        related_name="ranking_tasks_as_prefix",
        help_text="The user turn the candidates answer.",
    )
    generation_job = models.ForeignKey(
        "sampler.GenerationJob",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="ranking_tasks",
    )
    model_version = models.ForeignKey(
        "sampler.ModelVersion", on_delete=models.PROTECT, related_name="ranking_tasks"
    )
    # The writer of the source conversation never ranks it (copied here so claiming needs no join).
    source_owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PREPARING)
    alternatives_requested = models.PositiveSmallIntegerField(default=4)
    overlap_required = models.PositiveSmallIntegerField(default=3)
    rankings_count = models.PositiveSmallIntegerField(default=0)
    # Assignments currently leased: a task is offered while rankings + leases < overlap.
    leased_count = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True)
    # Whether the task uses up its source message: no other task is made from it. False only
    # for a task whose preparation failed for a reason the message had no part in (a backend
    # error, a cancelled or lost job), so that the message can be tried again; a task the
    # content filter refused keeps it, and so does the last of a source's tries
    # (``ranking.rank.services.SOURCE_PREPARATION_TRIES``). A gold copy never holds it: the
    # task it copies does. At most one task holds a source (``task_one_holder_per_source``).
    holds_source = models.BooleanField(default=True)
    # Whether a failure of this task is one of its source's tries: not for one failed only
    # because the content filter could not run (its replies kept out of ranking unjudged), no
    # fault of the source however long the filter is down. A database default too, so code
    # from before it (during an upgrade) inserts tasks without it.
    spends_try = models.BooleanField(default=True, db_default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    ready_at = models.DateTimeField(null=True, blank=True)
    # A gold task: a copy of ``gold_of`` (or a task) with the expected order, best first, as
    # tie groups of this task's candidate ids; mixed into trainers' streams to measure them.
    gold_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="gold_copies"
    )
    gold_ordering = models.JSONField(null=True, blank=True)
    # Uncertainty selection: prepared but not yet offered, and the reward models' disagreement.
    held_back = models.BooleanField(default=False)
    uncertainty = models.FloatField(null=True, blank=True)
    project = project_key("ranking_tasks")

    class Meta:
        ordering = ["created_at"]
        indexes = [models.Index(fields=["status", "created_at"])]
        constraints = [
            models.CheckConstraint(
                condition=Q(rankings_count__lte=models.F("overlap_required")),
                name="task_never_more_rankings_than_overlap",
            ),
            models.CheckConstraint(
                condition=Q(rankings_count__gte=0) & Q(leased_count__gte=0),
                name="task_counts_not_negative",
            ),
            models.UniqueConstraint(
                fields=["source_message"],
                condition=Q(holds_source=True),
                name="task_one_holder_per_source",
            ),
        ]

    def __str__(self) -> str:
        return f"Task {self.pk} ({self.status})"


class Candidate(models.Model):
    task = models.ForeignKey(RankingTask, on_delete=models.CASCADE, related_name="candidates")
    message = models.ForeignKey(
        "labeling.Message", on_delete=models.PROTECT, related_name="candidacies"
    )
    is_source = models.BooleanField(default=False, help_text="The message the task was built from.")
    position = models.PositiveSmallIntegerField(help_text="Canonical order within the task.")

    class Meta:
        ordering = ["task", "position"]
        constraints = [
            models.UniqueConstraint(fields=["task", "position"], name="candidate_unique_position"),
            models.UniqueConstraint(fields=["task", "message"], name="candidate_unique_message"),
        ]

    def __str__(self) -> str:
        return f"Candidate {self.position} of task {self.task_id}"


class Assignment(models.Model):
    """A lease: the task is reserved for one trainer until ``expires_at``."""

    class Status(models.TextChoices):
        LEASED = "leased", "Leased"
        SUBMITTED = "submitted", "Ranked"
        SKIPPED = "skipped", "Skipped"
        EXPIRED = "expired", "Lease expired"

    task = models.ForeignKey(RankingTask, on_delete=models.CASCADE, related_name="assignments")
    trainer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="ranking_assignments"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.LEASED)
    presentation_order = models.JSONField(default=list, help_text="Candidate ids as shown.")
    skip_reason = models.CharField(max_length=500, blank=True)
    leased_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-leased_at"]
        indexes = [
            models.Index(fields=["status", "expires_at"]),
            models.Index(fields=["trainer", "status"]),
        ]
        constraints = [
            models.UniqueConstraint(fields=["task", "trainer"], name="assignment_once_per_trainer"),
        ]

    def __str__(self) -> str:
        return f"Assignment of task {self.task_id} to {self.trainer_id} ({self.status})"


class Ranking(models.Model):
    """One trainer's ranking of one task's candidates."""

    class Verdict(models.TextChoices):
        RANKED = "ranked", "Ranked"
        ALL_EQUAL = "all_equal", "All equally good"
        ALL_BAD = "all_bad", "All bad"
        CANNOT_RANK = "cannot_rank", "Cannot rank"

    task = models.ForeignKey(RankingTask, on_delete=models.PROTECT, related_name="rankings")
    assignment = models.OneToOneField(Assignment, on_delete=models.PROTECT, related_name="ranking")
    ranker = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="rankings"
    )
    # Best to worst, as a list of tie groups of candidate ids: [[3], [1, 4], [2]].
    ordering = models.JSONField(default=list)
    # True for the "all bad" and "cannot rank" verdicts (no ordering); "all equally good" is one
    # tie group holding every reply.
    cannot_rank = models.BooleanField(default=False)
    verdict = models.CharField(max_length=16, choices=Verdict.choices, default=Verdict.RANKED)
    flags = models.JSONField(
        default=dict, blank=True, help_text='Candidate id -> {"flags": [...], "note": "..."}.'
    )
    rationale = models.TextField(blank=True, max_length=4000)
    presentation_order = models.JSONField(default=list)
    guideline_version = guideline_version_key("rankings")
    started_at = models.DateTimeField()
    submitted_at = models.DateTimeField(auto_now_add=True)
    duration_ms = models.PositiveIntegerField()
    # Whether the submitted order, read best to worst, is the order the replies were shown in
    # (None for verdicts without an ordering and for older rows): a trainer who submits the
    # shown order far more often than chance is not reading.
    order_unchanged = models.BooleanField(null=True, blank=True)
    # From the page showing the task to the first reply being placed, as the browser measured
    # it (None when not reported, e.g. through the API or without JavaScript).
    first_placement_ms = models.PositiveIntegerField(null=True, blank=True)
    project = project_key("rankings")

    class Meta:
        ordering = ["-submitted_at"]
        constraints = [
            models.UniqueConstraint(fields=["task", "ranker"], name="ranking_once_per_trainer"),
        ]

    def __str__(self) -> str:
        return f"Ranking of task {self.task_id} by {self.ranker_id}"


class UndoRemoval(models.Model):
    """A row that taking a ranking back deleted (``ranking_undo``): the ranking, or a lease on a
    next task given back with it. Kept so that a later request of its trainer on it (a stale
    tab's submit or skip, a second undo) is told that it is gone, a 409 as for every claim that
    is, not that it never existed; for anyone else that id stays a 404, as an unknown one.
    Kept ``UNDO_REMOVAL_TTL_SECONDS`` (a week by default): the periodic
    ``ranking.rank.tasks.delete_expired_undo_removals`` deletes older ones, and such an id is
    then a 404 to its trainer too."""

    # A memo of the trainer's own requests: it goes with them.
    trainer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    # The id the deleted row had, not a key: the row is gone. Not unique: a database may issue
    # a deleted row's id again (SQLite does after a migration rebuilds the table), and an undo
    # of the new row is then recorded beside the old; either way the id was the trainer's.
    ranking_id = models.PositiveBigIntegerField(null=True, blank=True, db_index=True)
    assignment_id = models.PositiveBigIntegerField(null=True, blank=True, db_index=True)
    # Indexed: the hourly prune (``undo_removals_delete_expired``) deletes by it alone.
    removed_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(ranking_id__isnull=True, assignment_id__isnull=False)
                | Q(ranking_id__isnull=False, assignment_id__isnull=True),
                name="undo_removal_one_row",
            ),
        ]

    def __str__(self) -> str:
        removed = (
            f"ranking {self.ranking_id}"
            if self.ranking_id is not None
            else f"assignment {self.assignment_id}"
        )
        return f"Undo of {self.trainer_id} removed {removed}"
