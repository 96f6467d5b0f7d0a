"""The gates before anything leaves: every check on a project, and the approval bound to content."""
