"""Coverage-guided fuzzing of aiaas's parsers (atheris); see fuzz/__main__.py."""
