"""The side-by-side vote page: trainers judge two versions' replies to one prompt."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from accounts.roles import trainer_required
from config.htmx import HtmxHttpRequest
from sampler.comparisons.selectors import (
    side_by_side_get,
    side_by_side_next,
    side_by_side_votes_count,
)
from sampler.comparisons.services import side_by_side_order, side_by_side_vote

PAGE = "sampler/vote.html"


def _context(request: HtmxHttpRequest) -> dict:
    item = side_by_side_next(voter=request.user)
    replies = []
    if item is not None:
        a_first = side_by_side_order(item=item, voter=request.user)
        replies = [item.reply_a, item.reply_b] if a_first else [item.reply_b, item.reply_a]
    return {
        "item": item,
        "replies": replies,
        "voted": side_by_side_votes_count(voter=request.user),
    }


@trainer_required
def vote(request: HtmxHttpRequest) -> HttpResponse:
    template = f"{PAGE}#vote-card" if request.htmx else PAGE
    return render(request, template, _context(request))


@trainer_required
@require_POST
def vote_submit(request: HtmxHttpRequest, item_id: int) -> HttpResponse:
    item = side_by_side_get(item_id=item_id, voter=request.user)
    if item is None:
        raise Http404("No such side-by-side.")
    try:
        side_by_side_vote(item=item, voter=request.user, position=request.POST.get("choice", ""))
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
        return render(request, PAGE, _context(request), status=400)
    if request.htmx:
        return render(request, f"{PAGE}#vote-card", _context(request))
    return redirect("sampler:vote")
