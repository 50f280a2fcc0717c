"""star-kit's built-in plugins. Each module is registered through the ``star_kit`` entry-point group in
pyproject.toml, exactly as a third-party plugin would be."""
