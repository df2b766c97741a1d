from django.contrib import admin

from labeling.models import Conversation, Message


class MessageInline(admin.TabularInline):
    model = Message
    extra = 0
    fields = ("parent", "role", "origin", "content", "author", "created_at")
    readonly_fields = ("created_at",)
    raw_id_fields = ("parent", "author")
    show_change_link = True


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ("id", "title", "owner", "status", "source", "message_count", "updated_at")
    list_filter = ("status", "source", "created_at")
    search_fields = ("title", "instructions", "owner__username", "messages__content")
    raw_id_fields = ("owner",)
    date_hierarchy = "created_at"
    inlines = [MessageInline]

    @admin.display(description="Messages")
    def message_count(self, obj: Conversation) -> int:
        return obj.messages.count()


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "conversation",
        "role",
        "origin",
        "short_content",
        "author",
        "model_version",
        "created_at",
    )
    list_filter = ("role", "origin", "model_version", "created_at")
    search_fields = ("content", "conversation__title", "author__username")
    raw_id_fields = ("conversation", "parent", "sample", "author")
    list_select_related = ("conversation", "author", "model_version")

    @admin.display(description="Content")
    def short_content(self, obj: Message) -> str:
        return obj.content[:80]
