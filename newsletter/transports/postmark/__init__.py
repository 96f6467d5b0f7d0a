"""Postmark: sending (`send`), bounces read from its API and its webhooks (`feedback`), and its
settings (`settings`). Importing the package loads nothing but this line."""
