"""Typed readers for settings taken from the environment."""

import json
import math
import os
from pathlib import Path

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}

# Every variable the settings read (filled as they are read): the app's own configuration and
# secrets, which no model server's options may name as their key; with them, those the
# deployment hands every container (docker-compose.yml's .env) without the settings reading
# them.
SETTINGS_NAMES: set[str] = {
    "POSTGRES_PASSWORD",
    "POSTGRES_USER",
    "POSTGRES_DB",
    "FLOWER_BASIC_AUTH",
    "DJANGO_SUPERUSER_PASSWORD",
}


def env_str(name: str, default: str) -> str:
    SETTINGS_NAMES.add(name)
    return os.environ.get(name, default)


def env_dir(name: str, default: str) -> Path:
    """A folder, as an absolute path: a relative one names another folder for each process
    started from elsewhere (the web server, a worker), so a file one writes the other misses."""
    raw = env_str(name, default)
    if not Path(raw).is_absolute():
        raise ValueError(f"{name} must be an absolute path, got {raw!r}")
    return Path(raw)


def env_bool(name: str, default: bool) -> bool:
    SETTINGS_NAMES.add(name)
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{name} must be a boolean (1/0, true/false), got {raw!r}")


def env_int(name: str, default: int, *, least: int | None = None, most: int | None = None) -> int:
    """An integer; ``least`` and ``most`` bound it (None: unbounded)."""
    return _env_number(name, default, int, "an integer", least=least, most=most)


def env_float(
    name: str,
    default: float,
    *,
    least: float | None = None,
    most: float | None = None,
    above: float | None = None,
) -> float:
    """A finite number; ``least`` and ``most`` bound it, ``above`` bounds it strictly."""
    return _env_number(name, default, float, "a number", least=least, most=most, above=above)


def _env_number(
    name: str,
    default: float,
    parse: type[int] | type[float],
    what: str,
    *,
    least: float | None = None,
    most: float | None = None,
    above: float | None = None,
):
    """The setting read with ``parse`` and checked against its bounds; ValueError naming the
    setting and the values it takes otherwise (a bad setting stops the start, not a request)."""
    SETTINGS_NAMES.add(name)
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    if least is not None and most is not None:
        what += f" between {least} and {most}"
    elif least is not None:
        what += f" of at least {least}"
    elif most is not None:
        what += f" of at most {most}"
    if above is not None:
        what += f" above {above}"
    try:
        value = parse(raw)
    except ValueError as error:
        raise ValueError(f"{name} must be {what}, got {raw!r}") from error
    if (
        not math.isfinite(value)
        or (least is not None and value < least)
        or (most is not None and value > most)
        or (above is not None and value <= above)
    ):
        raise ValueError(f"{name} must be {what}, got {raw!r}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    SETTINGS_NAMES.add(name)
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_json(name: str, default: object) -> object:
    """A JSON value (list, object), for settings a comma list cannot hold (e.g. regexes)."""
    SETTINGS_NAMES.add(name)
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return json.loads(raw)
    except json.JSONDecodeError as error:
        raise ValueError(f"{name} must be JSON, got {raw!r} ({error})") from error
