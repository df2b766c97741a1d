"""The Exports page for admins: choose a format and filters, preview, export, download."""

from pathlib import Path

from django.conf import settings
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from accounts.roles import staff_required
from config.htmx import HtmxHttpRequest
from ranking.exports import services
from ranking.exports.features import features_path
from ranking.exports.forms import ExportForm
from ranking.exports.models import DatasetExport
from ranking.exports.selectors import dataset_export_list, export_preview_get
from sampler.jobs.selectors import jobs_progress

PAGE = "ranking/exports/list.html"


def _exports() -> dict:
    """The exports the table lists, and whether one of them may change by itself (the table
    polls while one does; queued ones waiting for no worker stop it, and it says so, as it
    says which ones the job queue has not taken yet)."""
    exports = list(dataset_export_list()[:100])
    return {"exports": exports, "exports_progress": jobs_progress(jobs=exports)}


def _page(request: HttpRequest, form: ExportForm, *, status: int = 200) -> HttpResponse:
    return render(request, PAGE, {"form": form, **_exports()}, status=status)


def _blank_page(request: HttpRequest) -> HttpResponse:
    """The page with nothing chosen yet (pairs, the rest at their defaults)."""
    return _page(request, ExportForm(initial={"format": "pairs"}))


@staff_required
def export_list(request: HttpRequest) -> HttpResponse:
    return _blank_page(request)


@staff_required
def export_preview(request: HtmxHttpRequest) -> HttpResponse:
    """The preview's count for the filters asked; opened by itself (a bookmark, a typed
    address), the whole Exports page with those filters chosen and the count shown; the
    address alone, with no filters, the page as the Exports link opens it (no count asked
    for, so none of the fields is missing)."""
    if not request.htmx and not request.GET:
        return _blank_page(request)
    form = ExportForm(request.GET)
    context = {"form": form}
    if form.is_valid():
        format, filters = form.cleaned_data["format"], form.cleaned_data["filters"]
        preview = export_preview_get(format=format, filters=filters)
        context["count"] = preview.sources
        context["unit"] = preview.unit
        context["rows"] = preview.rows
        context["row_total"] = sum(preview.rows.values())
        context["skipped"] = preview.skipped_summary
    status = 200 if form.is_valid() else 422
    if not request.htmx:
        # The whole page says the form's errors at its top, once.
        return render(request, PAGE, {**context, **_exports()}, status=status)
    return render(request, f"{PAGE}#preview", {**context, "preview_alone": True}, status=status)


@staff_required
@require_POST
def export_start(request: HttpRequest) -> HttpResponse:
    form = ExportForm(request.POST)
    if not form.is_valid():
        return _page(request, form, status=422)
    services.dataset_export_create(
        created_by=request.user,
        format=form.cleaned_data["format"],
        filters=form.cleaned_data["filters"],
        compress=form.cleaned_data["compress"],
    )
    # The table says, in the part it polls, when the job queue has not taken it yet.
    if request.htmx:
        return render(request, f"{PAGE}#export-table", _exports())
    return redirect("ranking:exports")


@staff_required
def export_status(request: HtmxHttpRequest) -> HttpResponse:
    """The exports table alone: what the page polls while an export may change by itself, and
    what its "Check again" button asks for. Opened by itself, the whole Exports page."""
    if not request.htmx:
        return _page(request, ExportForm(initial={"format": "pairs"}))
    return render(request, f"{PAGE}#export-table", _exports())


@staff_required
def export_download(request: HttpRequest, export_id: int) -> FileResponse:
    export = get_object_or_404(DatasetExport, pk=export_id, status=DatasetExport.Status.SUCCEEDED)
    return _attachment(_served_path(Path(export.file_path)))


@staff_required
def export_features(request: HttpRequest, export_id: int) -> HttpResponse:
    """The export's column types (``<name>.features.json``), for ``load_dataset(features=)``.
    An export written before its types were (or whose types file is gone) gets them made
    from its format and filters: they depend on nothing else."""
    export = get_object_or_404(DatasetExport, pk=export_id, status=DatasetExport.Status.SUCCEEDED)
    exported = _served_path(Path(export.file_path))  # the export itself must still be there
    features = features_path(exported)
    if features.is_file():
        return _attachment(_served_path(features))
    response = JsonResponse(services.dataset_export_features(export=export))
    response["Content-Disposition"] = f'attachment; filename="{features.name}"'
    return response


def _served_path(path: Path) -> Path:
    """``path``, when it is a file this app wrote under EXPORT_ROOT (only those are served)."""
    if not path.is_file() or Path(settings.EXPORT_ROOT).resolve() not in path.resolve().parents:
        raise Http404("The export file is gone.")
    return path


def _attachment(path: Path) -> FileResponse:
    return FileResponse(path.open("rb"), as_attachment=True, filename=path.name)
