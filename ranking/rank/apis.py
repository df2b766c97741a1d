"""Ranking JSON API: claim the next task, submit a ranking, skip a task."""

import re

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.roles import IsTrainer
from config.api import (
    ApiView,
    StrictBooleanField,
    StrictCharField,
    StrictChoiceField,
    StrictDictField,
    StrictIdField,
    StrictIntegerField,
    no_body_fields,
    query_names_checked,
    validated_input,
)
from config.idempotency import idempotent
from ranking.projects.selectors import project_for_trainer
from ranking.rank import services
from ranking.rank.models import Ranking
from ranking.rank.selectors import (
    WAITING_REASONS,
    RemovedByUndo,
    assignment_get_for_trainer,
    assignment_screen,
    ranking_as_shown,
    ranking_waiting_state,
)

# Bounds on what a request may carry, well above any real task (K + 1 candidates, K <= 16),
# so a malformed or hostile body is refused by the serializer before the service runs. Texts
# are bounded by the limits the services check (the schema states them), and an over-long one
# is refused with the service's sentence, as the pages refuse it.
MAX_CANDIDATES = 64
MAX_FLAGS_PER_REPLY = 10
# The headers of a claim answered 204 that say why no task is ready: the reason, and (where
# there is one) a sentence saying it in plain words, as the Rank page says it.
WAITING_HEADER = "Tandem-Waiting-Reason"
WAITING_DETAIL_HEADER = "Tandem-Waiting-Detail"


def _candidate_id() -> StrictIdField:
    return StrictIdField()


# A reply id (the number the reply is shown under, as the claim gives it) as an object key: its
# digits as written by ``str(id)``, no sign, no leading zero, no more digits than the largest id
# has (a key "03" would name reply 3 under another name).
_REPLY_ID_KEY = re.compile(r"[1-9][0-9]{0,18}")


def _candidate_key(key: str) -> int:
    """A JSON object key (always a string) naming a reply id."""
    if not _REPLY_ID_KEY.fullmatch(key):
        raise serializers.ValidationError("not a reply id")
    return _candidate_id().run_validation(int(key))


def _candidate_keys(value: dict, field: str) -> dict[int, object]:
    """JSON object keys are strings: turn them into reply ids (the numbers the replies are shown
    under) or refuse the request."""
    if len(value) > MAX_CANDIDATES:
        raise serializers.ValidationError(f"At most {MAX_CANDIDATES} replies can carry {field}.")
    converted = {}
    for key, item in value.items():
        try:
            converted[_candidate_key(key)] = item
        except serializers.ValidationError as error:
            raise serializers.ValidationError(
                f"{field.capitalize()} must be keyed by reply id, not {key[:40]!r}."
            ) from error
    return converted


class ModerationOutputSerializer(serializers.Serializer):
    filter = serializers.CharField(source="filter_name")
    version = serializers.CharField(source="filter_version")
    flagged = serializers.BooleanField()
    categories = serializers.ListField(child=serializers.CharField())


class CandidateOutputSerializer(serializers.Serializer):
    # The number the reply is shown under (1 = the first shown), never a row id: the reply the
    # task was made from has the smallest candidate and message ids of its task.
    id = serializers.IntegerField(help_text="The reply's number as shown: 1, 2, ...")
    text = serializers.CharField()
    moderation = ModerationOutputSerializer(
        allow_null=True,
        help_text="The content filter's verdict, for every reply when it saw each of them, "
        "else only for those it flagged.",
    )


class AssignmentOutputSerializer(serializers.Serializer):
    assignment_id = serializers.IntegerField(source="assignment.pk")
    task_id = serializers.IntegerField(source="assignment.task_id")
    expires_at = serializers.DateTimeField(source="assignment.expires_at")
    prefix = serializers.ListField(child=serializers.DictField(child=serializers.CharField()))
    candidates = CandidateOutputSerializer(many=True)
    replies_waiting_for_filter = serializers.BooleanField(
        help_text="Whether the content filter has not judged every reply yet (stored while it "
        "could not run, a filter being configured to judge them); said for the assignment, "
        "never on a reply, so that the reply the task was made from is not singled out."
    )


# What a claim with ``?project=`` (a slug left blank) is told.
EMPTY_PROJECT_MESSAGE = (
    "Give a project's slug, or leave the parameter out to claim from any project open to you."
)


class TaskClaimApi(ApiView):
    """The trainer's current assignment, or a lease on the next task that needs them."""

    permission_classes = [IsTrainer]
    query_checked_by_handler = frozenset({"post"})

    @extend_schema(
        request=None,
        parameters=[
            OpenApiParameter(
                "project",
                OpenApiTypes.STR,
                description=(
                    "A project's slug; left out, any project open to the trainer. Given empty, a "
                    "400 naming it (no project is chosen by an empty value)."
                ),
            ),
            OpenApiParameter(
                WAITING_HEADER,
                OpenApiTypes.STR,
                location=OpenApiParameter.HEADER,
                response=[204],
                enum=WAITING_REASONS,
                description="Why no task is ready: the reason the Rank page shows.",
            ),
            OpenApiParameter(
                WAITING_DETAIL_HEADER,
                OpenApiTypes.STR,
                location=OpenApiParameter.HEADER,
                response=[204],
                description=(
                    "With `pool_failed`: why no new task comes, in a sentence for the trainer, "
                    "as the Rank page says it (the content filter is not running, or the last "
                    "try failed); absent with the other reasons."
                ),
            ),
        ],
        responses={
            200: AssignmentOutputSerializer,
            204: OpenApiResponse(
                description=f"No task is ready for this trainer; `{WAITING_HEADER}` says why."
            ),
        },
    )
    def post(self, request: Request) -> Response:
        no_body_fields(request)
        # A misspelt parameter would claim from any project: refused by name instead.
        query_names_checked(request.query_params, {"project"})
        slug = request.query_params.get("project")
        project = None
        if slug == "":
            # A slug left blank (``?project=``) names no project: "any" is the parameter left out.
            raise serializers.ValidationError({"project": [EMPTY_PROJECT_MESSAGE]})
        if slug is not None:
            project = project_for_trainer(trainer=request.user, slug=slug)
            if project is None:
                raise NotFound("No active project with that slug is open to you.")
        assignment = services.task_claim_next(trainer=request.user, project=project)
        if assignment is None:
            waiting = ranking_waiting_state(trainer=request.user, project=project)
            headers = {WAITING_HEADER: waiting.reason}
            if waiting.detail:
                headers[WAITING_DETAIL_HEADER] = waiting.detail
            return Response(status=status.HTTP_204_NO_CONTENT, headers=headers)
        return Response(AssignmentOutputSerializer(assignment_screen(assignment=assignment)).data)


# Someone else's assignment is answered like a missing one.
NOT_YOUR_ASSIGNMENT = OpenApiResponse(description="No such assignment of yours.")


class RankingSubmitApi(ApiView):
    """Store the trainer's ranking of an assigned task (best first, tie groups allowed)."""

    permission_classes = [IsTrainer]

    class InputSerializer(serializers.Serializer):
        ordering = serializers.ListField(
            child=serializers.ListField(child=_candidate_id(), max_length=MAX_CANDIDATES),
            max_length=MAX_CANDIDATES,
            default=list,
        )
        cannot_rank = StrictBooleanField(default=False)
        verdict = StrictChoiceField(
            choices=Ranking.Verdict.values,
            required=False,
            default="",
            help_text="ranked (the default: give ordering), or one answer about all replies "
            "with a rationale and no ordering: all_equal, all_bad, cannot_rank.",
        )
        flags = StrictDictField(
            child=serializers.ListField(
                child=StrictCharField(max_length=50), max_length=MAX_FLAGS_PER_REPLY
            ),
            required=False,
            default=dict,
        )
        flag_notes = StrictDictField(
            child=StrictCharField(
                allow_blank=True,
                max_length=services.MAX_FLAG_NOTE_CHARS,
                error_messages={"max_length": services.FLAG_NOTE_TOO_LONG},
            ),
            required=False,
            default=dict,
        )
        rationale = StrictCharField(
            allow_blank=True,
            required=False,
            default="",
            max_length=services.MAX_RATIONALE_CHARS,
            error_messages={"max_length": services.RATIONALE_TOO_LONG},
        )
        first_placement_ms = StrictIntegerField(
            required=False,
            allow_null=True,
            default=None,
            min_value=0,
            max_value=services.MAX_DURATION_MS,
            error_messages={
                "min_value": services.FIRST_PLACEMENT_OUT_OF_RANGE,
                "max_value": services.FIRST_PLACEMENT_OUT_OF_RANGE,
            },
            help_text="Milliseconds from the task being shown to the first reply being placed, "
            "as the ranking page measures it (optional; at most the ranking's duration).",
        )

        class Meta:
            ref_name = "RankingSubmitInput"

        def validate_flags(self, value: dict) -> dict[int, list[str]]:
            for names in value.values():
                if repeated := sorted({name for name in names if names.count(name) > 1}):
                    raise serializers.ValidationError(
                        f"A reply's flags name each flag once ({', '.join(repeated)} repeated)."
                    )
            return _candidate_keys(value, "flags")

        def validate(self, attrs: dict) -> dict:
            verdict = attrs.get("verdict") or ""
            given = "cannot_rank" in self.initial_data
            if verdict and given and attrs["cannot_rank"] != (verdict == "cannot_rank"):
                raise serializers.ValidationError(
                    {
                        "verdict": "Contradicts cannot_rank: give the verdict alone "
                        "(cannot_rank is the verdict cannot_rank)."
                    }
                )
            return attrs

        def validate_flag_notes(self, value: dict) -> dict[int, str]:
            return _candidate_keys(value, "flag notes")

    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        task_id = serializers.IntegerField()
        assignment_id = serializers.IntegerField()
        ordering = serializers.JSONField(help_text="Tie groups of reply ids, best first.")
        cannot_rank = serializers.BooleanField()
        verdict = serializers.CharField()
        flags = serializers.JSONField(help_text='Reply id -> {"flags": [...], "note": "..."}.')
        rationale = serializers.CharField()
        presentation_order = serializers.JSONField(help_text="Reply ids as shown: 1, 2, ...")
        started_at = serializers.DateTimeField()
        submitted_at = serializers.DateTimeField()
        duration_ms = serializers.IntegerField()
        first_placement_ms = serializers.IntegerField(allow_null=True)

        class Meta:
            ref_name = "RankingOutput"

    @extend_schema(
        request=InputSerializer,
        responses={
            201: OutputSerializer,
            400: OpenApiResponse(description="The ranking is not valid; messages per field."),
            404: NOT_YOUR_ASSIGNMENT,
            409: OpenApiResponse(
                description="Already ranked, skipped, given back when the ranking before it "
                "was taken back, its project closed, or a lease that ran out on a full task: "
                "answered before the ranking's content."
            ),
        },
    )
    @idempotent
    def post(self, request: Request, assignment_id: int) -> Response:
        data = validated_input(self.InputSerializer, request.data)
        try:
            assignment = assignment_get_for_trainer(
                assignment_id=assignment_id, trainer=request.user
            )
            ranking = services.ranking_submit_shown(
                assignment=assignment,
                trainer=request.user,
                ranking=services.RankingInput(
                    ordering=data["ordering"],
                    cannot_rank=data["cannot_rank"],
                    flags=data["flags"],
                    flag_notes=data["flag_notes"],
                    rationale=data["rationale"],
                    verdict=data["verdict"],
                    first_placement_ms=data["first_placement_ms"],
                ),
            )
        except (RemovedByUndo, services.RankingConflict) as conflict:
            return Response({"detail": str(conflict)}, status=status.HTTP_409_CONFLICT)
        # The ranking as it was given: its replies by the numbers they were shown under.
        body = self.OutputSerializer(ranking).data | ranking_as_shown(ranking=ranking)
        return Response(body, status=status.HTTP_201_CREATED)


class AssignmentSkipApi(ApiView):
    """Give an assigned task back; it is not offered to this trainer again."""

    permission_classes = [IsTrainer]

    class InputSerializer(serializers.Serializer):
        reason = StrictCharField(
            allow_blank=True,
            required=False,
            default="",
            max_length=services.MAX_SKIP_REASON_CHARS,
            error_messages={"max_length": services.SKIP_REASON_TOO_LONG},
        )

        class Meta:
            ref_name = "AssignmentSkipInput"

    class OutputSerializer(serializers.Serializer):
        assignment_id = serializers.IntegerField(source="pk")
        task_id = serializers.IntegerField()
        status = serializers.CharField()
        skip_reason = serializers.CharField()

        class Meta:
            ref_name = "AssignmentSkipOutput"

    @extend_schema(
        request=InputSerializer,
        responses={
            200: OutputSerializer,
            404: NOT_YOUR_ASSIGNMENT,
            409: OpenApiResponse(
                description="Already ranked (a ranked task cannot be skipped), given back "
                "when the ranking before it was taken back, its project closed, or its "
                "conversation reopened or discarded: as a submit is answered."
            ),
        },
    )
    def post(self, request: Request, assignment_id: int) -> Response:
        data = validated_input(self.InputSerializer, request.data)
        try:
            assignment = assignment_get_for_trainer(
                assignment_id=assignment_id, trainer=request.user
            )
            services.assignment_skip(
                assignment=assignment, trainer=request.user, reason=data["reason"]
            )
        except (RemovedByUndo, services.RankingConflict) as conflict:
            return Response({"detail": str(conflict)}, status=status.HTTP_409_CONFLICT)
        assignment.refresh_from_db()
        return Response(self.OutputSerializer(assignment).data)
