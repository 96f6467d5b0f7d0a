"""The foundation every layer stands on: errors, paths, settings, files and the readers of YAML and CSV."""
