"""What a browser sees: `serve` (unsubscribe, webhooks), the preview and the archive site."""
