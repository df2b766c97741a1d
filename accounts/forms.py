from django import forms

from config.forms import StorableCharField
from config.text import validate_one_line


class ApiTokenCreateForm(forms.Form):
    # One line, as the Account page's list and `api_token list` show it.
    name = StorableCharField(
        max_length=100,
        strip=True,
        validators=[validate_one_line],
        help_text="What the token is for.",
    )
