from django import template

from labeling.redteam.models import Attack

register = template.Library()


@register.simple_tag
def attack_categories() -> list[tuple[str, str]]:
    """What a successful attack can be marked as, for the attack form of the editor's turns."""
    return Attack.Category.choices
