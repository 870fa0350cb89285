"""Suite files: :mod:`.load` reads one (JSON or YAML, :mod:`.yaml_reader`), :mod:`.schema`
says what it may hold, :mod:`.validate` finds every problem and builds the ``Suite``."""
