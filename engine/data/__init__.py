"""The data layer: the task catalog, built-in and image sets, image folders, CSV tables, splits."""
