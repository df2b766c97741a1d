"""The content filter: every generated sample is scored before a trainer sees it."""
