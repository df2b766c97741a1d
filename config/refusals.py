"""Sentences the API and the HTML pages both refuse a request with, so that the two doors say
the same of the same mistake."""

# A query parameter given more than once where it takes one value (``?status=a&status=b``):
# which one was meant is not known, so neither is taken.
REPEATED_PARAMETER = "Give this parameter once."

# A day range whose first day is after its last: the pages' filters and the export filters
# (the Exports and Training pages, the export API) alike.
DATES_OUT_OF_ORDER = "The start date is after the end date."
