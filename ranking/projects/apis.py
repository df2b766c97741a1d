"""JSON API of projects: trainers list where they may rank; admins create, change and follow."""

from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.roles import IsStaff, IsTrainer, is_admin
from config.api import (
    ApiView,
    StrictBooleanField,
    StrictCharField,
    StrictChoiceField,
    StrictDateTimeField,
    StrictDictField,
    StrictFloatField,
    StrictIdField,
    StrictIntegerField,
    StrictObjectSerializer,
    StrictSlugField,
    StrictURLField,
    validated_input,
)
from config.idempotency import idempotent
from config.text import validate_one_line
from ranking.projects import limits, services
from ranking.projects.models import Project
from ranking.projects.selectors import project_list, project_progress, projects_for_trainer
from sampler.registry.models import ModelVersion

MAX_POLICIES = services.MAX_POLICIES


class PolicyInputSerializer(StrictObjectSerializer):
    model_version_id = StrictIdField()
    weight = StrictFloatField(min_value=0, max_value=services.MAX_POLICY_WEIGHT, default=1.0)


class ProjectInputSerializer(serializers.Serializer):
    name = StrictCharField(max_length=200, validators=[validate_one_line])
    slug = StrictSlugField(max_length=64)
    description = StrictCharField(max_length=5000, required=False, allow_blank=True)
    guideline_url = StrictURLField(max_length=200, required=False, allow_blank=True)
    status = StrictChoiceField(choices=Project.Status.choices, required=False)
    alternatives = StrictIntegerField(
        min_value=1, max_value=limits.MAX_ALTERNATIVES, required=False, allow_null=True
    )
    overlap = StrictIntegerField(
        min_value=1, max_value=limits.MAX_OVERLAP, required=False, allow_null=True
    )
    sampling_params = StrictDictField(required=False)
    pool_size = StrictIntegerField(
        min_value=0, max_value=limits.MAX_POOL_SIZE, required=False, allow_null=True
    )
    target_rankings = StrictIntegerField(
        min_value=0, max_value=limits.MAX_TARGET_RANKINGS, required=False
    )
    deadline = StrictDateTimeField(required=False, allow_null=True)
    gold_rate = StrictFloatField(min_value=0, max_value=1, required=False)
    qualification_required = StrictBooleanField(required=False)
    qualification_tasks = StrictIntegerField(
        min_value=1, max_value=limits.MAX_QUALIFICATION_TASKS, required=False
    )
    qualification_threshold = StrictFloatField(min_value=0, max_value=1, required=False)
    selection = StrictChoiceField(choices=Project.Selection.choices, required=False)
    exploration_share = StrictFloatField(min_value=0, max_value=1, required=False)
    candidate_factor = StrictIntegerField(
        min_value=1, max_value=limits.MAX_CANDIDATE_FACTOR, required=False
    )
    # A list field, not ``many=True``: its errors as a whole (too many, not a list) are a list
    # of sentences as every field's are, and the schema states its maxItems.
    policies = serializers.ListField(
        child=PolicyInputSerializer(), required=False, max_length=MAX_POLICIES
    )
    trainer_group_ids = serializers.ListField(child=StrictIdField(), required=False, max_length=100)

    def validate_policies(self, value: list[dict]) -> list[tuple[ModelVersion, float]]:
        # A PATCH validates partially, nested objects too: their required id is checked here.
        if any("model_version_id" not in entry for entry in value):
            raise serializers.ValidationError("Each policy needs its model_version_id.")
        ids = [entry["model_version_id"] for entry in value]
        versions = ModelVersion.objects.in_bulk(ids)
        missing = sorted(set(ids) - set(versions))
        if missing:
            raise serializers.ValidationError(f"No model version with id {missing}.")
        return [(versions[entry["model_version_id"]], entry.get("weight", 1.0)) for entry in value]

    def validate_trainer_group_ids(self, value: list[int]) -> list[Group]:
        if twice := sorted({pk for pk in value if value.count(pk) > 1}):
            raise serializers.ValidationError(f"Group {twice[0]} is named twice.")
        groups = Group.objects.in_bulk(value)
        missing = sorted(set(value) - set(groups))
        if missing:
            raise serializers.ValidationError(f"No group with id {missing}.")
        return list(groups.values())


class ProjectOutputSerializer(serializers.Serializer):
    """What trainers see of a project: what it is and how to work on it, not how it samples,
    tests or routes them (gold rate, qualification, policies and groups are staff-only)."""

    id = serializers.IntegerField()
    name = serializers.CharField()
    slug = serializers.CharField()
    description = serializers.CharField()
    guideline_url = serializers.CharField()
    status = serializers.CharField()
    deadline = serializers.DateTimeField(allow_null=True)

    class Meta:
        ref_name = "Project"


# Left out for trainers, so optional in the schema.
STAFF_ONLY = {"required": False, "help_text": "Staff only."}


class _PoliciesField(serializers.ListField):
    def get_attribute(self, project: Project) -> list[dict]:
        return [
            {"model_version_id": policy.model_version_id, "weight": policy.weight}
            for policy in project.policies.all()
        ]


class _GroupIdsField(serializers.ListField):
    def get_attribute(self, project: Project) -> list[int]:
        return sorted(project.trainer_groups.values_list("pk", flat=True))


class ProjectStaffOutputSerializer(ProjectOutputSerializer):
    """Admins also see the whole configuration (these fields are left out for trainers, so the
    schema marks them optional)."""

    alternatives = serializers.IntegerField(allow_null=True, **STAFF_ONLY)
    overlap = serializers.IntegerField(allow_null=True, **STAFF_ONLY)
    sampling_params = serializers.DictField(**STAFF_ONLY)
    pool_size = serializers.IntegerField(allow_null=True, **STAFF_ONLY)
    target_rankings = serializers.IntegerField(**STAFF_ONLY)
    gold_rate = serializers.FloatField(**STAFF_ONLY)
    qualification_required = serializers.BooleanField(**STAFF_ONLY)
    qualification_tasks = serializers.IntegerField(**STAFF_ONLY)
    qualification_threshold = serializers.FloatField(**STAFF_ONLY)
    selection = serializers.CharField(**STAFF_ONLY)
    exploration_share = serializers.FloatField(**STAFF_ONLY)
    candidate_factor = serializers.IntegerField(**STAFF_ONLY)
    policies = _PoliciesField(child=serializers.DictField(), **STAFF_ONLY)
    trainer_group_ids = _GroupIdsField(child=serializers.IntegerField(), **STAFF_ONLY)
    pool_error = serializers.CharField(
        required=False,
        help_text="Staff only. Why the pool's last fill or task preparation failed; empty: it "
        "did not.",
    )

    class Meta:
        ref_name = "ProjectWithConfig"


class ProgressOutputSerializer(serializers.Serializer):
    rankings = serializers.IntegerField()
    target = serializers.IntegerField()
    percent = serializers.FloatField(allow_null=True)
    tasks_ready = serializers.IntegerField()
    tasks_preparing = serializers.IntegerField()
    tasks_complete = serializers.IntegerField()
    rate_per_day = serializers.FloatField()
    tasks_held = serializers.IntegerField()
    eta = serializers.DateTimeField(allow_null=True)
    late = serializers.BooleanField()


def _service_fields(data: dict) -> dict:
    fields = dict(data)
    if "trainer_group_ids" in fields:
        fields["trainer_groups"] = fields.pop("trainer_group_ids")
    return fields


class ProjectListApi(ApiView):
    """Trainers: the active projects open to them. Admins: every project; POST creates one."""

    def get_permissions(self):
        return [IsStaff()] if self.request.method == "POST" else [IsTrainer()]

    @extend_schema(
        operation_id="projects_list",
        responses=OpenApiResponse(
            ProjectStaffOutputSerializer(many=True),
            description="Projects; the configuration fields are included for staff only.",
        ),
    )
    def get(self, request: Request) -> Response:
        if is_admin(request.user):
            return Response(ProjectStaffOutputSerializer(project_list(), many=True).data)
        projects = projects_for_trainer(trainer=request.user)
        return Response(ProjectOutputSerializer(projects, many=True).data)

    @extend_schema(request=ProjectInputSerializer, responses={201: ProjectStaffOutputSerializer})
    @idempotent
    def post(self, request: Request) -> Response:
        data = validated_input(ProjectInputSerializer, request.data)
        project = services.project_create(created_by=request.user, **_service_fields(data))
        return Response(ProjectStaffOutputSerializer(project).data, status=status.HTTP_201_CREATED)


class ProjectDetailApi(ApiView):
    """One project's settings (admins); PATCH changes the fields given."""

    permission_classes = [IsStaff]

    @extend_schema(responses=ProjectStaffOutputSerializer)
    def get(self, request: Request, project_id: int) -> Response:
        return Response(
            ProjectStaffOutputSerializer(get_object_or_404(Project, pk=project_id)).data
        )

    @extend_schema(request=ProjectInputSerializer, responses=ProjectStaffOutputSerializer)
    def patch(self, request: Request, project_id: int) -> Response:
        project = get_object_or_404(Project, pk=project_id)
        data = validated_input(ProjectInputSerializer, request.data, partial=True)
        try:
            project = services.project_update(project=project, **_service_fields(data))
        except ValidationError as error:
            # Named as the body names it.
            errors = error.message_dict
            if "trainer_groups" in errors:
                errors["trainer_group_ids"] = errors.pop("trainer_groups")
            raise ValidationError(errors) from error
        return Response(ProjectStaffOutputSerializer(project).data)


class ProjectProgressApi(ApiView):
    """Rankings against the target, the pool, the rate over the last week and the ETA."""

    permission_classes = [IsStaff]

    @extend_schema(responses=ProgressOutputSerializer)
    def get(self, request: Request, project_id: int) -> Response:
        project = get_object_or_404(Project, pk=project_id)
        return Response(ProgressOutputSerializer(project_progress(project=project)).data)
