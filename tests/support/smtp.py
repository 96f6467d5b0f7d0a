"""The real SMTP server (aiosmtpd on 127.0.0.1) used by delivery tests: see its change."""
