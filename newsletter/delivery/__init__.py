"""Sending an issue exactly once: the plan, the send run, test copies, daily caps, the report."""
