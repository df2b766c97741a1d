"""Streaming export endpoint: the same records as the Exports page, as JSONL over HTTP, and
their column types."""

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.roles import IsStaff
from accounts.selectors import user_ids_existing
from config.api import (
    ApiView,
    QueryBooleanField,
    QueryDateField,
    QueryFloatField,
    QueryIntegerField,
    validated_query,
)
from config.querysets import MAX_ID
from labeling.guidelines.selectors import guideline_numbers_existing
from ranking.exports.features import export_features
from ranking.exports.filters import (
    FLAG_NAMES,
    FORMATS,
    MAX_SPLIT_SEED,
    MAX_TEST_FRACTION,
    MIN_AGREEMENT_BOUNDS,
    PAIR_MODES,
    RED_TEAM_MODES,
    SPLIT_SEED_BOUNDS,
    SPLITS,
    TEST_FRACTION_BOUNDS,
    ExportFilters,
)
from ranking.exports.pipeline import jsonl_lines, records
from ranking.projects.selectors import project_ids_existing
from sampler.registry.selectors import model_version_ids_existing

# The query parameter of each filter whose name differs from the ExportFilters field's (a list
# field is plural there, one value per parameter here): an error about it names the parameter.
QUERY_PARAMETERS = {
    "model_version_ids": "model_version_id",
    "exclude_flags": "exclude_flag",
    "exclude_trainer_ids": "exclude_trainer_id",
    "guideline_versions": "guideline_version",
    "project_ids": "project_id",
}


class ExportStreamApi(ApiView):
    """Stream an export as JSONL, read from the database in chunks (memory stays flat)."""

    permission_classes = [IsStaff]
    query_checked_by_handler = frozenset({"get"})

    class InputSerializer(serializers.Serializer):
        format = serializers.ChoiceField(choices=FORMATS)
        date_from = QueryDateField(required=False)
        date_to = QueryDateField(required=False)
        model_version_id = serializers.ListField(
            child=QueryIntegerField(min_value=1, max_value=MAX_ID),
            required=False,
            max_length=100,
        )
        min_agreement = QueryFloatField(
            required=False, min_value=0, max_value=1, error_messages=MIN_AGREEMENT_BOUNDS
        )
        exclude_flag = serializers.ListField(
            child=serializers.ChoiceField(choices=FLAG_NAMES), required=False
        )
        exclude_trainer_id = serializers.ListField(
            child=QueryIntegerField(min_value=1, max_value=MAX_ID),
            required=False,
            max_length=1000,
        )
        pair_mode = serializers.ChoiceField(choices=PAIR_MODES, default="per_ranker")
        split = serializers.ChoiceField(choices=SPLITS, default="all")
        test_fraction = QueryFloatField(
            default=0.1,
            min_value=0,
            max_value=MAX_TEST_FRACTION,
            error_messages=TEST_FRACTION_BOUNDS,
        )
        split_seed = QueryIntegerField(
            default=0, min_value=0, max_value=MAX_SPLIT_SEED, error_messages=SPLIT_SEED_BOUNDS
        )
        pseudonymize = QueryBooleanField(default=True)
        red_team = serializers.ChoiceField(choices=RED_TEAM_MODES, default="include")
        guideline_version = serializers.ListField(
            child=QueryIntegerField(min_value=1, max_value=MAX_ID),
            required=False,
            max_length=1000,
        )
        project_id = serializers.ListField(
            child=QueryIntegerField(min_value=1, max_value=MAX_ID),
            required=False,
            max_length=100,
        )

        class Meta:
            ref_name = "ExportStreamInput"

    @extend_schema(
        parameters=[InputSerializer],
        responses={(200, "application/jsonl"): OpenApiTypes.BINARY},
        description="JSONL records of the chosen format; see the README for each schema.",
    )
    def get(self, request: Request) -> StreamingHttpResponse:
        repeated = {
            "model_version_id",
            "exclude_flag",
            "exclude_trainer_id",
            "guideline_version",
            "project_id",
        }
        data = validated_query(self.InputSerializer, request.query_params, lists=repeated)
        filters = ExportFilters(
            date_from=data.get("date_from"),
            date_to=data.get("date_to"),
            model_version_ids=model_version_ids_existing(ids=data.get("model_version_id", ())),
            min_agreement=data.get("min_agreement"),
            exclude_flags=tuple(data.get("exclude_flag", ())),
            exclude_trainer_ids=user_ids_existing(
                ids=data.get("exclude_trainer_id", ()), key="exclude_trainer_id"
            ),
            pair_mode=data["pair_mode"],
            split=data["split"],
            test_fraction=data["test_fraction"],
            split_seed=data["split_seed"],
            pseudonymize=data["pseudonymize"],
            red_team=data["red_team"],
            guideline_versions=guideline_numbers_existing(
                numbers=data.get("guideline_version", ())
            ),
            project_ids=project_ids_existing(ids=data.get("project_id", ())),
        )  # a ValidationError here becomes a 400 with its messages (config.api)
        filters.check_format(data["format"], names=QUERY_PARAMETERS)
        response = StreamingHttpResponse(
            jsonl_lines(records(data["format"], filters)), content_type="application/jsonl"
        )
        response["Content-Disposition"] = f'attachment; filename="{data["format"]}.jsonl"'
        return response


class ExportFeaturesApi(ApiView):
    """The column types of a format's records, as ``datasets.Features.to_dict()`` writes them:
    ``load_dataset("json", ..., features=Features.from_dict(...))`` reads a streamed export
    with one type per column, wherever its nulls fall."""

    permission_classes = [IsStaff]
    query_checked_by_handler = frozenset({"get"})

    class InputSerializer(serializers.Serializer):
        format = serializers.ChoiceField(choices=FORMATS)
        pseudonymize = QueryBooleanField(default=True)

        class Meta:
            ref_name = "ExportFeaturesInput"

    @extend_schema(
        parameters=[InputSerializer],
        responses={200: OpenApiTypes.OBJECT},
        description="Column name -> type, as the streaming export with the same format and "
        "pseudonymize writes them.",
    )
    def get(self, request: Request) -> Response:
        data = validated_query(self.InputSerializer, request.query_params)
        return Response(export_features(data["format"], pseudonymize=data["pseudonymize"]))
