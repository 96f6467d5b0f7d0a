"""What the team writes: issues, the publications catalogue, their Markdown."""
