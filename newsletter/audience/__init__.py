"""Who gets an issue: recipient lists, segments, and the people who must never be mailed."""
