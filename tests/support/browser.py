"""The real headless Chromium (Playwright) used by browser tests: see its change."""
