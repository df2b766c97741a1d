"""One way to write dates and times on every page (``FORMAT_MODULE_PATH``): a date and time
as 2026-12-07 12:55, not Django's English "Dec. 7, 2026, 12:55 p.m." beside pages that wrote
2026-12-07 12:55. A time alone (a lease's end) adds its zone in its template (``H:i T``):
without the day it is the one thing that says which clock it is on."""

DATE_FORMAT = "Y-m-d"
DATETIME_FORMAT = "Y-m-d H:i"
TIME_FORMAT = "H:i"
SHORT_DATE_FORMAT = "Y-m-d"
SHORT_DATETIME_FORMAT = "Y-m-d H:i"
