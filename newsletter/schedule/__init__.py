"""Time: which issues are due, the `dispatch` run cron makes, and the cron set-up."""
