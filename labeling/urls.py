"""The app's pages (under /write/): every feature's URLs in the one ``labeling`` namespace, so
``{% url 'labeling:...' %}`` names stay as they were."""

from labeling.conversations.urls import urlpatterns as conversation_urls
from labeling.feedback.urls import urlpatterns as feedback_urls
from labeling.guidelines.urls import urlpatterns as guideline_urls
from labeling.redteam.urls import urlpatterns as redteam_urls

app_name = "labeling"

urlpatterns = [*conversation_urls, *feedback_urls, *guideline_urls, *redteam_urls]
