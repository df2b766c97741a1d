"""Generation backends (placeholder until the backends land: only the option check)."""


def validate_options(backend: str, options: dict) -> dict[str, str]:
    if options:
        return {key: "unknown option" for key in options}
    return {}
