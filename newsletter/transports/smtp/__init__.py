"""An SMTP relay: the transport (`send`), connecting and logging in (`connection`), what a
refusal is about (`replies`), and its settings (`settings`). Importing the package loads nothing
but this line."""
