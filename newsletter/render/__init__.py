"""An issue turned into emails: each variant rendered once, then personalised, then built as MIME."""
