"""An example segkit plugin package."""
