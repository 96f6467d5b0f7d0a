"""What comes back: returned mail and provider events, read, classified and acted on once."""
