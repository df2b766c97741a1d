from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from accounts.roles import trainer_required
from labeling.models import Conversation
from labeling.selectors import conversation_list as select_conversations


@trainer_required
def conversation_list(request: HttpRequest) -> HttpResponse:
    status = request.GET.get("status", "")
    if status not in Conversation.Status.values:
        status = ""
    search = request.GET.get("q", "")[:200]
    conversations = select_conversations(user=request.user, status=status, search=search)[:200]
    return render(
        request,
        "labeling/conversation_list.html",
        {
            "conversations": conversations,
            "status": status,
            "search": search,
            "statuses": Conversation.Status.choices,
        },
    )
