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
# What the form's buttons say, by position: the page never names versions.
POSITIONS = ("first", "second", "tie")


def _context(request: HtmxHttpRequest) -> dict:
    item = side_by_side_next(voter=request.user)
    a_first = side_by_side_order()
    replies = []
    if item is not None:
        replies = [item.reply_a, item.reply_b] if a_first else [item.reply_b, item.reply_a]
    return {
        "item": item,
        "a_first": a_first,
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
    position = request.POST.get("choice", "")
    a_first = request.POST.get("a_first") == "1"
    if position not in POSITIONS or request.POST.get("a_first") not in ("0", "1"):
        messages.error(request, "Choose one of the two replies, or about the same.")
        return render(request, PAGE, _context(request), status=400)
    if position == "tie":
        choice = "tie"
    else:
        first_is_a = a_first
        choice = "a" if (position == "first") == first_is_a else "b"
    try:
        side_by_side_vote(item=item, voter=request.user, choice=choice, a_shown_first=a_first)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
        return render(request, PAGE, _context(request), status=400)
    if request.htmx:
        return render(request, f"{PAGE}#vote-card", _context(request))
    return redirect("sampler:vote")
